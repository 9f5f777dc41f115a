"""`emsupply up`: the services of the suite as gunicorn processes on one machine, started in
order, watched, and stopped together (on Ctrl-C, or as soon as one of them dies).

Before anything starts, every setting is checked and every database migrated, so that a bad
`EMSUPPLY_*_DB` ends in one line and leaves nothing running. While the suite runs, the data
directory holds `suite.json` (where the gateway listens, the supervisor's pid), which
`emsupply scenario --data-dir` reads to find it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from sqlalchemy.exc import DBAPIError, OperationalError

from shared.config import ConfigError, Settings, load_settings
from shared.migrate import upgrade

PACKAGES = {"inventory": "inventory_svc", "allocation": "allocation_svc", "gateway": "gateway"}
OFFSETS = {"gateway": 0, "inventory": 1, "allocation": 2}
STATE_FILE = "suite.json"


@dataclass
class Service:
    name: str
    package: str
    port: int
    process: subprocess.Popen | None = None
    log_path: Path | None = None


SCALED = ("inventory", "allocation")  # what --instances runs several of


def services(port: int, names: tuple[str, ...], instances: int = 1) -> list[Service]:
    """The processes of the suite, in `names`' order: the gateway on `port`, then inventory's
    instances on the next ports, then allocation's (P+1 and P+2 with one instance each);
    the second instance of a service is `<name>-2`, and so on."""
    found = []
    for name in names:
        if name not in SCALED:
            found.append(Service(name, PACKAGES[name], port + OFFSETS[name]))
            continue
        first = port + 1 + SCALED.index(name) * instances
        found.extend(Service(name if k == 0 else f"{name}-{k + 1}", PACKAGES[name], first + k)
                     for k in range(instances))
    return found


def scale(env: dict[str, str], data_dir: Path, port: int, names: tuple[str, ...],
          instances: int) -> None:
    """With several instances: each service's database must take concurrent writers from
    several processes (PostgreSQL; SQLite is one file for one machine), and the gateway and
    the allocation service are given the instances' URLs (EMSUPPLY_INVENTORY_URL,
    EMSUPPLY_ALLOCATION_URL, comma-separated). A ConfigError when it cannot be."""
    if instances == 1:
        return
    scaled = tuple(name for name in SCALED if name in names)
    for name, settings in check_settings(data_dir, scaled, env).items():
        if not settings.database_url.startswith("postgresql"):
            variable = f"EMSUPPLY_{name.upper()}_DB"
            shown = f"{variable} is SQLite" if env.get(variable, "").strip() else \
                f"{variable} is not set (the embedded SQLite default)"
            raise ConfigError(f"--instances {instances} needs PostgreSQL for the inventory and "
                              f"allocation databases, which several processes then write at "
                              f"once: {shown}; set it to a postgresql+psycopg:// URL")
    for name in scaled:
        env[f"EMSUPPLY_{name.upper()}_URL"] = ",".join(
            f"http://127.0.0.1:{service.port}" for service in services(port, (name,), instances))


def check_settings(data_dir: Path, names: tuple[str, ...],
                   env: dict[str, str]) -> dict[str, Settings]:
    """Every setting of every service, read and checked (ConfigError on the first bad one)."""
    return {name: load_settings(name, env, data_dir) for name in names}


def prepare(data_dir: Path, names: tuple[str, ...], env: dict[str, str]) -> dict[str, Settings]:
    """Validate every setting and migrate every database before anything starts. A database
    that cannot be opened is a ConfigError naming its variable: one line, not a traceback."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "logs").mkdir(exist_ok=True)
    settings = check_settings(data_dir, names, env)
    for name, each in settings.items():
        try:
            upgrade(PACKAGES[name], each.database_url)
        except (DBAPIError, OSError) as exc:  # the driver's: unreachable, refused, no such file
            variable = f"EMSUPPLY_{name.upper()}_DB"
            shown = variable if env.get(variable, "").strip() else f"the default {variable}"
            doing = "open" if isinstance(exc, OperationalError | OSError) else "migrate"
            raise ConfigError(f"{shown}: cannot {doing} the {name} database "
                              f"({_first_line(exc)})") from None
    return settings


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return f"{cause.__class__.__name__}: {text[0] if text else ''}".rstrip(": ")[:300]


def check_ports(port: int, names: tuple[str, ...], instances: int = 1) -> None:
    """Each port the suite needs is free, or a ConfigError says which is taken."""
    wanted = services(port, names, instances)
    if max(service.port for service in wanted) > 65535:
        raise ConfigError(f"--port {port} leaves no room for {len(wanted)} services on the "
                          "ports after it; choose a lower --port")
    for service in wanted:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", service.port))
            except OSError:
                raise ConfigError(f"port {service.port} (the {service.name} service's) is "
                                  "already in use; is another suite running? Choose another "
                                  "--port") from None


def start(service: Service, data_dir: Path, env: dict[str, str], workers: int) -> None:
    service.log_path = data_dir / "logs" / f"{service.name}.log"
    log = open(service.log_path, "ab")  # noqa: SIM115 (the child keeps it)
    # gunicorn 27 opens a control socket under the home directory by default; three
    # services would fight over it, so none is opened.
    command = [sys.executable, "-m", "gunicorn", f"{service.package}:create_app()",
               "--bind", f"127.0.0.1:{service.port}", "--workers", str(workers),
               "--worker-class", "gthread", "--threads", "4", "--timeout", "60",
               "--graceful-timeout", "5", "--no-control-socket"]
    service.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL,
                                       env={**env, "EMSUPPLY_DATA_DIR": str(data_dir)},
                                       start_new_session=True)
    log.close()


class Interrupted(Exception):
    """Ctrl-C or SIGTERM while the suite was starting."""


def wait_ready(service: Service, timeout_s: float = 60.0, stopping: list | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{service.port}/readyz"
    last = "it never answered"
    while time.monotonic() < deadline:
        if stopping:
            raise Interrupted()
        if service.process.poll() is not None:
            raise RuntimeError(died(service))
        try:
            answer = requests.get(url, timeout=1)
            if answer.status_code == 200:
                return
            last = f"its /readyz answered {answer.status_code}: {answer.text.strip()[:300]}"
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{service.name} was not ready after {timeout_s:.0f} s ({last}; "
                       f"log: {service.log_path})")


def check_redis(env: dict[str, str]) -> None:
    """A configured Redis answers, or a ConfigError says it does not."""
    url = env.get("EMSUPPLY_REDIS_URL", "").strip()
    if not url:
        return
    from shared.redis import connect

    client = connect(url, timeout_s=2.0)
    try:
        client.ping()
    except Exception as exc:  # redis-py's errors and the socket's
        raise ConfigError(f"EMSUPPLY_REDIS_URL: cannot reach Redis at {url} "
                          f"({exc.__class__.__name__}: {str(exc)[:200]})") from None
    finally:
        client.close()


def exit_status(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by signal {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


def died(service: Service, lines: int = 12) -> str:
    """Which service died, how, and the end of its log (access lines left out: the why is
    in gunicorn's own lines and the errors)."""
    tail = "    (its log is empty)"
    if service.log_path and service.log_path.exists():
        every = service.log_path.read_text(errors="replace").splitlines()
        telling = [line for line in every if '"logger": "emsupply.access"' not in line]
        shown = telling[-lines:] or every[-lines:]
        if shown:
            tail = "\n".join("    " + line[:400] for line in shown)
    return (f"{service.name} died ({exit_status(service.process.returncode)}); the other "
            f"services are being stopped. The end of {service.log_path}:\n{tail}")


def stop_all(running: list[Service]) -> None:
    """SIGTERM to each service's whole process group (the gunicorn master and its workers;
    also the workers of a master that died), then SIGKILL to whatever is left after 10 s."""
    for service in running:
        if service.process:
            _signal_group(service.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for service in running:
        if not service.process:
            continue
        try:
            service.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(service.process.pid, signal.SIGKILL)
            service.process.wait()
    for service in running:  # orphaned workers of a master that was killed
        if service.process:
            _wait_group_gone(service.process.pid, deadline)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _wait_group_gone(pgid: int, deadline: float) -> None:
    while True:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        if time.monotonic() > deadline:
            _signal_group(pgid, signal.SIGKILL)
            time.sleep(0.1)
            if time.monotonic() > deadline + 5:
                return
        time.sleep(0.1)


def write_state(data_dir: Path, port: int) -> Path:
    path = data_dir / STATE_FILE
    path.write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": os.getpid(),
                                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                            time.gmtime())}) + "\n")
    return path


def running_suite(data_dir: Path) -> dict | None:
    """What `emsupply up` wrote about the suite it runs on `data_dir`, if it still runs."""
    path = data_dir / STATE_FILE
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state


def run(data_dir: Path, port: int, names: tuple[str, ...], workers: int = 2,
        echo=print, warn=None, instances: int = 1) -> int:
    """Start, watch, stop. Returns the exit status for the command line. A ConfigError is
    raised before anything has started (the CLI shows it as one line). `instances`: how many
    processes of the inventory and of the allocation service (each under gunicorn with
    `workers`), balanced by the gateway and by the allocation service's client."""
    warn = warn or echo
    env = dict(os.environ)
    env["EMSUPPLY_PORT"] = str(port)
    env.setdefault("EMSUPPLY_GATEWAY_SERVICES", ",".join(n for n in names if n != "gateway"))
    env.setdefault("EMSUPPLY_WARM_START", "1")  # plans do not wait for the first reads
    if running_suite(data_dir):
        raise ConfigError(f"a suite is already running on {data_dir} "
                          f"(see {data_dir / STATE_FILE})")
    check_settings(data_dir, names, env)
    scale(env, data_dir, port, names, instances)
    check_ports(port, names, instances)
    check_redis(env)
    prepare(data_dir, names, env)
    embedded = background = state = None
    running: list[Service] = []
    stopping: list[int] = []
    # Ctrl-C (SIGINT) and SIGTERM both stop the suite; handled here rather than left to the
    # inherited dispositions (a shell's background job ignores SIGINT, for one).
    previous = {signum: signal.signal(signum, lambda signum, _: stopping.append(signum))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not env.get("EMSUPPLY_REDIS_URL", "").strip():  # the default: Redis of our own
            from shared.redis import EmbeddedRedis

            embedded = EmbeddedRedis(data_dir / "redis").start()
            env["EMSUPPLY_REDIS_URL"] = embedded.url
        settings = check_settings(data_dir, names, env)
        started = services(port, names, instances)
        width = max(11, *(len(service.name) + 1 for service in started))
        for service in started:
            start(service, data_dir, env, workers)
            running.append(service)
            wait_ready(service, stopping=stopping)
            echo(f"{service.name:<{width}} http://127.0.0.1:{service.port}  "
                 f"(log: {service.log_path})")
        if "gateway" in settings:
            background = start_background(settings, port)
        if embedded:
            echo(f"{'redis':<{width}} {embedded.url}  (embedded)  (log: "
                 f"{embedded.directory / 'redis.log'})")
        state = write_state(data_dir, port)
        echo(f"ready: the API is http://127.0.0.1:{port}/api/v1, its docs "
             f"http://127.0.0.1:{port}/docs; Ctrl-C stops everything")
        while not stopping:
            for service in running:
                if service.process.poll() is not None:
                    warn(died(service))
                    return 1
            time.sleep(0.5)
        echo("stopping")
        return 0
    except (KeyboardInterrupt, Interrupted):
        echo("stopping")
        return 0
    except RuntimeError as exc:
        warn(str(exc))
        return 1
    finally:
        if state:
            state.unlink(missing_ok=True)
        if background:
            background.stop()
        stop_all(running)
        if embedded:
            embedded.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if running:
            echo("stopped: " + ", ".join(s.name for s in running))


def start_background(settings: dict[str, Settings], port: int):
    """The outbox relays of the services and the webhook dispatcher, as threads of this
    process (emsupply.worker)."""
    from emsupply.worker import Background

    services = {name: each for name, each in settings.items() if name != "gateway"}
    return Background(services, settings["gateway"], f"http://127.0.0.1:{port}").start()
