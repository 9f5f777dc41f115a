"""A client of the suite's public API for the command line (seed, import, export, scenario):
over HTTP through the gateway with a bearer token, or in this process through the services'
own apps (same schemas, rules and events, no server needed) when the suite is not running."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import requests

from shared import auth
from shared.config import load_settings

T = TypeVar("T")
R = TypeVar("R")


class Answer(NamedTuple):
    status: int
    body: Any
    headers: dict[str, str]


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: Any):
        detail = body.get("detail") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path.split('?', 1)[0]} -> {status}: {detail}")
        self.method, self.path, self.status, self.body = method, path, status, body
        self.detail = detail
        self.errors = body.get("errors") if isinstance(body, dict) else None


class SuiteClient:
    """What the CLI's commands call. `parallel` is how many calls may usefully run at once
    (1 in this process, where the apps share one interpreter; more over HTTP)."""

    parallel = 1

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        answer = self.request(method, path, body, headers)
        if answer.status not in ok:
            raise ApiError(method, path, answer.status, answer.body)
        return answer.body

    def send(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        answer = self.request(method, path, body, headers)
        return answer.status, answer.body

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> Answer:
        raise NotImplementedError

    def pages(self, path: str, limit: int = 1000) -> list[dict]:
        """Every row of a paginated list."""
        rows: list[dict] = []
        for page in self.iter_pages(path, limit):
            rows.extend(page)
        return rows

    def iter_pages(self, path: str, limit: int = 1000) -> Iterator[list[dict]]:
        cursor = None
        joiner = "&" if "?" in path else "?"
        while True:
            page = self.call("GET", f"{path}{joiner}limit={limit}" +
                             (f"&cursor={cursor}" if cursor else ""))
            yield page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def map(self, fn: Callable[[T], R], work: Iterable[T]) -> Iterator[R]:
        """`fn` over `work`, `parallel` at a time, results in order."""
        if self.parallel <= 1:
            yield from map(fn, work)
            return
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="suite") as pool:
            yield from pool.map(fn, work)

    def close(self) -> None:
        pass


class HttpSuite(SuiteClient):
    """The suite's gateway over HTTP with a bearer token. A 429 (rate limit) or 503 (a
    service restarting, a circuit open) is waited out as its Retry-After says, up to
    `patience_s` in all for one call (a 503 only for reads, PUTs and calls with an
    Idempotency-Key, which are safe to repeat)."""

    def __init__(self, url: str, token: str, timeout: float = 120.0, parallel: int = 4,
                 patience_s: float = 300.0, language: str | None = None):
        self.url = url.rstrip("/")
        self.language = language  # Accept-Language: problems and reasons in it
        self.token = token
        self.timeout = timeout
        self.parallel = parallel
        self.patience_s = patience_s
        self.local = threading.local()
        self.sessions: list[requests.Session] = []
        self.lock = threading.Lock()

    def _session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
            if self.language:
                session.headers["Accept-Language"] = self.language
            self.local.session = session
            with self.lock:
                self.sessions.append(session)
        return session

    def request(self, method, path, body=None, headers=None):
        deadline = time.monotonic() + self.patience_s
        while True:
            try:
                response = self._session().request(method, self.url + path, json=body,
                                                   headers=headers, timeout=(3.0, self.timeout))
            except requests.ConnectionError as exc:
                raise ApiError(method, path, 503, {"detail": f"cannot reach {self.url} "
                                                   f"({exc.__class__.__name__})"}) from None
            except requests.Timeout:
                raise ApiError(method, path, 504, {"detail": f"no answer from {self.url} in "
                                                   f"{self.timeout:.0f} s"}) from None
            wait = self._wait(response, method in ("GET", "PUT", "HEAD")
                              or "Idempotency-Key" in (headers or {}))
            if wait is None or time.monotonic() + wait > deadline:
                break
            time.sleep(wait)
        try:
            decoded = response.json() if response.content else None
        except ValueError:
            decoded = response.text
        return Answer(response.status_code, decoded, dict(response.headers))

    @staticmethod
    def _wait(response: requests.Response, repeatable: bool) -> float | None:
        """Seconds to wait before sending the same call again, or None to answer now: a 429
        was refused before it reached a service; a 503 may have done part of its work, so it
        is sent again only when that is safe."""
        if response.status_code != 429 and not (response.status_code == 503 and repeatable):
            return None
        try:
            return min(60.0, max(0.2, float(response.headers.get("Retry-After", "1"))))
        except ValueError:
            return 1.0

    def close(self) -> None:
        with self.lock:
            for session in self.sessions:
                session.close()
            self.sessions.clear()


class LocalSuite(SuiteClient):
    """The services' apps in this process, called with a signed admin (or given) identity."""

    def __init__(self, data_dir: Path, identity: auth.Identity | None = None,
                 language: str | None = None):
        from allocation_svc import create_app as allocation_app
        from gateway.proxy import owner
        from inventory_svc import create_app as inventory_app
        from shared.client import InProcessTransport, ServiceClient

        self.owner = owner
        self.identity = identity or auth.Identity("emsupply-cli", "admin")
        self.language = language  # Accept-Language: problems and reasons in it
        inventory_settings = load_settings("inventory", data_dir=data_dir)
        self.secret = inventory_settings.secret
        self.apps = {"inventory": inventory_app(inventory_settings)}
        self.clients = {"inventory": ServiceClient(
            "inventory", "http://in-process", self.secret,
            transport=InProcessTransport(self.apps["inventory"]))}
        self.apps["allocation"] = allocation_app(load_settings("allocation", data_dir=data_dir),
                                                 inventory_client=self.clients["inventory"])
        self.clients["allocation"] = ServiceClient(
            "allocation", "http://in-process", self.secret,
            transport=InProcessTransport(self.apps["allocation"]))
        # A CLI, not a server: the apps' info lines (each call, each migration) are noise here.
        logging.getLogger().setLevel(logging.WARNING)

    def request(self, method, path, body=None, headers=None):
        service = self.owner(path.split("?", 1)[0])
        if service is None:
            return Answer(404, {"detail": f"no service owns {path}"}, {})
        raw = b"" if body is None else json.dumps(body).encode()
        language = {"Accept-Language": self.language} if self.language else {}
        reply = self.clients[service].forward(method, path, self.identity, raw, {
            **language, **(headers or {}), "Content-Type": "application/json"})
        try:
            decoded = json.loads(reply.data) if reply.data else None
        except ValueError:
            decoded = None
        return Answer(reply.status, decoded, dict(reply.headers))

    def close(self) -> None:
        for app in self.apps.values():
            app.extensions["emsupply"].db.dispose()

