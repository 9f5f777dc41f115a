"""Helpers for tests that run the `emsupply` command as a newcomer would: real processes on free
ports, a fresh data directory each, and a check that nothing is left running afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests
from ports import free_block
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
EMSUPPLY = str(Path(sys.executable).with_name("emsupply"))


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any EMSUPPLY_* setting of the caller's (the embedded default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMSUPPLY_")}
    env.update(extra)
    return env


def processes_of(data_dir: Path) -> list[int]:
    """Processes that belong to a suite on `data_dir`: its path is in their command line (the
    supervisor, the embedded Redis) or in their environment (the services, whose
    EMSUPPLY_DATA_DIR the supervisor sets)."""
    needle = str(data_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() or \
                    needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_gone(data_dir: Path, timeout_s: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while processes_of(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    return processes_of(data_dir)


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300,
        check: bool = True) -> subprocess.CompletedProcess:
    answer = subprocess.run([EMSUPPLY, *args], cwd=ROOT, env=env or clean_env(),
                            capture_output=True, text=True, timeout=timeout)
    if check and answer.returncode != 0:
        raise AssertionError(f"emsupply {' '.join(args)} -> {answer.returncode}\n"
                             f"{answer.stdout}\n{answer.stderr}")
    return answer


class Up:
    """`emsupply up` (or `demo`) as a child process, its output collected line by line."""

    def __init__(self, data_dir: Path, command: str = "up", env: dict[str, str] | None = None,
                 port: int | None = None, args: tuple[str, ...] = ()):
        self.data_dir = data_dir
        self.port = port or free_block()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            [EMSUPPLY, command, "--data-dir", str(data_dir), "--port", str(self.port), *args],
            cwd=ROOT, env=env or clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith("ready"):
                self.ready.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout_s: float = 90) -> None:
        if not self.ready.wait(timeout_s):
            raise AssertionError(f"not ready after {timeout_s} s:\n{self.output}")

    def wait_exit(self, timeout_s: float = 30) -> int:
        code = self.process.wait(timeout_s)
        self.reader.join(5)
        return code

    def stop(self) -> int:
        """Ctrl-C, as a person would; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.wait_exit(40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.wait_exit(10)
        self.process.stdout.close()
        return code

    def session(self, token: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        return session


def service_master(data_dir: Path, package: str) -> int:
    """The pid of the gunicorn master serving `package` for the suite on `data_dir`."""
    candidates = []
    for pid in processes_of(data_dir):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if f"{package}:create_app()".encode() in cmdline:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            candidates.append((ppid, pid))
    pids = {pid for _, pid in candidates}
    masters = [pid for ppid, pid in candidates if ppid not in pids]
    if len(masters) != 1:
        raise AssertionError(f"expected one gunicorn master of {package}, found {candidates}")
    return masters[0]


def fresh_databases(admin_url: str, prefix: str) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database per service (`<prefix>_<service>_<tag>`), for a fixture to
    yield from; dropped afterwards."""
    tag = uuid.uuid4().hex[:6]
    names = {service: f"{prefix}_{service}_{tag}"
             for service in ("inventory", "allocation", "gateway")}
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]
    yield {service: f"{base}/{name}" for service, name in names.items()}
    with admin.connect() as conn:
        for name in names.values():
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
