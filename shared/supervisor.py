"""`emsupply up`: the services of the suite as gunicorn processes on one machine, started in
order, watched, and stopped together (on Ctrl-C, or as soon as one of them dies)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from shared.config import Settings, load_settings
from shared.migrate import upgrade


@dataclass
class Service:
    name: str
    package: str
    port: int
    process: subprocess.Popen | None = None
    log_path: Path | None = None


def services(port: int, names: tuple[str, ...]) -> list[Service]:
    offsets = {"inventory": 1, "allocation": 2, "gateway": 0}
    return [Service(name, f"{name}_svc" if name != "gateway" else "gateway", port + offsets[name])
            for name in names]


def prepare(data_dir: Path, names: tuple[str, ...], env: dict[str, str]) -> dict[str, Settings]:
    """Validate every setting and migrate every database before anything starts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "logs").mkdir(exist_ok=True)
    settings = {name: load_settings(name, env, data_dir) for name in names}
    for name, each in settings.items():
        upgrade(f"{name}_svc" if name != "gateway" else "gateway", each.database_url)
    return settings


def start(service: Service, data_dir: Path, env: dict[str, str], workers: int) -> None:
    service.log_path = data_dir / "logs" / f"{service.name}.log"
    log = open(service.log_path, "ab")  # noqa: SIM115 (the child keeps it)
    command = [sys.executable, "-m", "gunicorn", f"{service.package}:create_app()",
               "--bind", f"127.0.0.1:{service.port}", "--workers", str(workers),
               "--worker-class", "gthread", "--threads", "4", "--timeout", "60",
               "--graceful-timeout", "5", "--no-control-socket"]
    service.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       env={**env, "EMSUPPLY_DATA_DIR": str(data_dir)},
                                       start_new_session=True)
    log.close()


def wait_ready(service: Service, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{service.port}/readyz"
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(died(service))
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} was not ready after {timeout_s:.0f} s "
                       f"(log: {service.log_path})")


def died(service: Service) -> str:
    tail = ""
    if service.log_path and service.log_path.exists():
        tail = "\n".join(service.log_path.read_text(errors="replace").splitlines()[-15:])
    return (f"{service.name} stopped with exit status {service.process.returncode}; "
            f"last lines of {service.log_path}:\n{tail}")


def stop_all(running: list[Service]) -> None:
    for service in running:
        if service.process and service.process.poll() is None:
            os.killpg(service.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for service in running:
        if not service.process:
            continue
        try:
            service.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait()


def run(data_dir: Path, port: int, names: tuple[str, ...], workers: int = 2,
        echo=print) -> int:
    """Start, watch, stop. Returns the exit status for the command line."""
    env = dict(os.environ)
    env["EMSUPPLY_PORT"] = str(port)
    env.setdefault("EMSUPPLY_GATEWAY_SERVICES", ",".join(n for n in names if n != "gateway"))
    embedded = background = None
    running: list[Service] = []
    stopping = []
    previous = signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        if not env.get("EMSUPPLY_REDIS_URL", "").strip():  # the default: Redis of our own
            from shared.redis import EmbeddedRedis

            embedded = EmbeddedRedis(data_dir / "redis").start()
            env["EMSUPPLY_REDIS_URL"] = embedded.url
        settings = prepare(data_dir, names, env)
        for service in services(port, names):
            start(service, data_dir, env, workers)
            running.append(service)
            wait_ready(service)
            echo(f"{service.name:<11} http://127.0.0.1:{service.port}  (log: {service.log_path})")
        if "gateway" in settings:
            background = start_background(settings, port)
        if embedded:
            echo(f"{'redis':<11} {embedded.url}  (embedded)")
        echo("ready; Ctrl-C stops everything")
        while not stopping:
            for service in running:
                if service.process.poll() is not None:
                    echo(died(service))
                    return 1
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        echo("stopping")
        return 0
    except RuntimeError as exc:
        echo(str(exc))
        return 1
    finally:
        if background:
            background.stop()
        stop_all(running)
        if embedded:
            embedded.stop()
        signal.signal(signal.SIGTERM, previous)


def start_background(settings: dict[str, Settings], port: int):
    """The outbox relays of the services and the webhook dispatcher, as threads of this
    process (gateway.worker)."""
    from gateway.worker import Background

    services = {name: each for name, each in settings.items() if name != "gateway"}
    return Background(services, settings["gateway"], f"http://127.0.0.1:{port}").start()
