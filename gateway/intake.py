"""The gateway takes a request's body whole, within a size and a time, before anything else.

A body announced larger than `max_body_bytes` is 413 at once, unread. Any other body is read to
its end within `body_timeout_s` in all (not per read: a client dripping a byte a second would
pass any per-read timeout): when the time is up, the connection's reading side is shut, the
blocked read returns, and the answer is 408. Either way the server then closes the connection
rather than draining what is left of the body, so a slow or huge body holds a thread for at most
`body_timeout_s`. The body read is kept in the environ, so later readers never touch the socket.

The time is kept by one watchdog thread per process for all requests, not a timer thread per
request: starting a thread cost more than the rest of the gateway's work on a call.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import socket
import threading
import time
from collections.abc import Callable

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from gateway.options import Options

CHUNK = 64 * 1024
SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")


def install(app: Flask, options: Options) -> None:
    """Take every body before tokens are looked up or rates counted (install this first)."""
    @app.before_request
    def body_first():
        take_body(request.environ, options.max_body_bytes, options.body_timeout_s)


def take_body(environ: dict, max_bytes: int, timeout_s: float) -> None:
    """Read the body into the environ, or raise 413 (too large) or 408 (too slow)."""
    length = _length(environ)
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if length is None and not chunked:
        return
    connection = next((environ[k] for k in SOCKET_KEYS if k in environ), None)
    if length is not None and length > max_bytes:
        _stop_reading(connection)
        raise RequestEntityTooLarge(f"the body is {length} bytes; this gateway takes at most "
                                    f"{max_bytes} (EMSUPPLY_MAX_BODY)")
    late = threading.Event()

    def cut() -> None:
        late.set()
        _stop_reading(connection)

    alarm = WATCHDOG.after(timeout_s, cut) if connection is not None else None
    try:
        body = _read(environ["wsgi.input"], length, max_bytes)
    except OSError:
        body = None
    finally:
        if alarm is not None:
            WATCHDOG.cancel(alarm)
    if late.is_set() or body is None or (length is not None and len(body) < length):
        _stop_reading(connection)
        raise RequestTimeout(f"the body did not arrive within {timeout_s:g} s "
                             "(EMSUPPLY_BODY_TIMEOUT)")
    if len(body) > max_bytes:
        _stop_reading(connection)
        raise RequestEntityTooLarge(f"the body is over {max_bytes} bytes (EMSUPPLY_MAX_BODY)")
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def _length(environ: dict) -> int | None:
    """The announced length; none (as werkzeug reads it) when absent or not a number."""
    raw = environ.get("CONTENT_LENGTH", "").strip()
    return int(raw) if raw.isdigit() else None


def _read(stream, length: int | None, max_bytes: int) -> bytes:
    """`length` bytes, or (chunked) up to one byte over `max_bytes`; fewer at end of input."""
    want = length if length is not None else max_bytes + 1
    parts, size = [], 0
    while size < want:
        part = stream.read(min(CHUNK, want - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def _stop_reading(connection: socket.socket | None) -> None:
    """No more reads on this connection: a blocked one returns, the server closes it after the
    answer instead of draining the rest of the body."""
    if connection is not None:
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RD)


class Watchdog:
    """Calls what falls due, on one thread (started on first use, so in each worker process
    after the fork). A cancelled call is only marked, and dropped when its time comes. The
    calls are short (a socket's shutdown)."""

    def __init__(self) -> None:
        self._due: list[list] = []  # [when, sequence, call or None], a heap
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def after(self, seconds: float, call: Callable[[], None]) -> list:
        entry = [time.monotonic() + seconds, next(self._order), call]
        with self._wake:
            heapq.heappush(self._due, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="body-watchdog",
                                                daemon=True)
                self._thread.start()
            elif self._due[0] is entry:  # sooner than what the thread waits for
                self._wake.notify()
        return entry

    def cancel(self, entry: list) -> None:
        """Once this returns, the call has either been made or never will be."""
        with self._wake:
            entry[2] = None

    def _run(self) -> None:
        while True:
            with self._wake:  # calls are made holding it: `cancel` cannot pass one mid-way
                while self._due and self._due[0][2] is None:
                    heapq.heappop(self._due)
                if not self._due:
                    self._wake.wait()
                    continue
                delay = self._due[0][0] - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)
                    continue
                call = heapq.heappop(self._due)[2]
                with contextlib.suppress(Exception):
                    call()


WATCHDOG = Watchdog()
