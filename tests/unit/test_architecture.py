"""The layers hold: read every module's imports (top-level and inside functions) with `ast`.

shared/ is the ground floor and imports no service; a service imports no other service and not
the roof (emsupply/); nothing imports the roof; no two modules import each other, directly or
round a longer circle. docs/architecture.md draws the same picture.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("inventory_svc", "allocation_svc", "gateway")
PACKAGES = ("shared", *SERVICES, "emsupply")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules `name` imports: `from a import b` names a.b when b is a module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target.split(".")[0] in PACKAGES and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_the_modules_were_found():
    assert {"shared.auth", "inventory_svc.ledger", "allocation_svc.solver", "gateway.proxy",
            "emsupply.cli"} <= set(MODULES)
    assert "allocation_svc.roads" in GRAPH["allocation_svc.plans"] or any(
        "allocation_svc" in target for target in GRAPH["allocation_svc.plans"])


@pytest.mark.parametrize("package", ("shared", *SERVICES))
def test_layers(package):
    """shared imports only shared; a service only itself and shared; nobody the roof."""
    allowed = {"shared"} if package == "shared" else {"shared", package}
    wrong = sorted(f"{name} imports {target}" for name, targets in GRAPH.items()
                   if _top(name) == package for target in targets if _top(target) not in allowed)
    assert not wrong, "\n".join(wrong)


def test_no_circles():
    """No module reaches itself through its imports (a package's __init__ importing its own
    submodules in create_app is the one edge left out: it is the app factory's list of parts)."""
    def edges(name: str) -> set[str]:
        return {t for t in GRAPH[name] if not (t == _top(name) or name == _top(t))}

    state: dict[str, int] = {}
    circles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges(name)):
            if state.get(target) == 1:
                circles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)
