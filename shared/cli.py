"""The `emsupply` command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from shared.config import ConfigError


class Command(click.Group):
    """Configuration mistakes end in one clear line and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"emsupply: configuration error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=Command)
def main() -> None:
    """emsupply: emergency-supply inventory and allocation."""


data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                               default=Path("var"), show_default=True,
                               help="where the embedded default keeps its databases and logs")


@main.command()
@data_dir_option
@click.option("--port", type=click.IntRange(1, 65533), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
def up(data_dir: Path, port: int, workers: int) -> None:
    """Run the suite: each service under gunicorn with its own database."""
    from shared import supervisor

    sys.exit(supervisor.run(data_dir.resolve(), port, available_services(), workers, click.echo))


@main.command()
@data_dir_option
@click.option("--port", type=click.IntRange(1, 65533), default=8000, show_default=True)
@click.pass_context
def demo(ctx: click.Context, data_dir: Path, port: int) -> None:
    """What `make demo` runs: everything that exists so far, on the embedded default."""
    ctx.invoke(up, data_dir=data_dir, port=port, workers=2)


def available_services() -> tuple[str, ...]:
    """The services built so far, in start order (the gateway last: it needs the others)."""
    import importlib.util

    order = (("inventory", "inventory_svc"), ("allocation", "allocation_svc"),
             ("gateway", "gateway"))
    found = []
    for name, package in order:
        spec = importlib.util.find_spec(package)
        if spec and hasattr(importlib.import_module(package), "create_app"):
            found.append(name)
    return tuple(found)
