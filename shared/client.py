"""The one HTTP client for calls between services: pooled, signed, timeouts always set.

A `ServiceClient` signs each call and hands it to a `Transport`, which only moves bytes: over
urllib3's connection pool between processes, or into a Flask app's test client when both
services live in one process (the CLI without a running suite, the API tests). Failures of the
other side become the suite's own errors in one place, `ServiceClient._request`: unreachable is
Unavailable (503), too slow is UpstreamTimeout (504), both naming the service; and `call` raises
a problem+json answer again with its status, so a 409 with shortfalls from the inventory reaches
the commander as a 409 with the same shortfalls.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError, ReadTimeoutError

from shared import auth
from shared.errors import EmsupplyError, Unavailable, UpstreamTimeout


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer, whatever its status; `headers` is read without regard to case."""

    status: int
    headers: Mapping[str, str]
    data: bytes


class Transport(Protocol):
    """Moves one call to a service and back. Raises the builtin ConnectionError when the
    service cannot be reached (refused, reset, connect timeout, a broken answer) and
    TimeoutError when it does not answer within the read timeout; nothing else."""

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str],
                timeout: tuple[float, float]) -> Reply: ...

    def close(self) -> None: ...


class PooledTransport:
    """Between processes, straight on urllib3's connection pool: the gateway makes this hop on
    every call, and requests' own preparation of a call cost about as much as the service's
    answer."""

    def __init__(self, base_url: str, pool_size: int = 20):
        self.prefix = urlsplit(base_url).path.rstrip("/")
        self.pool = urllib3.connection_from_url(base_url, maxsize=pool_size, block=False)

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str],
                timeout: tuple[float, float]) -> Reply:
        connect, read = timeout
        try:
            answer = self.pool.urlopen(method, self.prefix + path, body=body or None,
                                       headers=headers, retries=False, redirect=False,
                                       assert_same_host=False,
                                       timeout=urllib3.Timeout(connect=connect, read=read))
        except ReadTimeoutError as exc:
            raise TimeoutError(str(exc)) from None
        except HTTPError as exc:  # refused, reset, connect timeout, a broken answer
            raise ConnectionError(str(exc)) from None
        return Reply(answer.status, answer.headers, answer.data)

    def close(self) -> None:
        self.pool.close()


class InProcessTransport:
    """Into a Flask app in this process, through its test client: no socket, no server. It
    cannot time out, and it never fails to reach the app."""

    def __init__(self, app):
        self.client = app.test_client()

    def request(self, method: str, path: str, body: bytes, headers: dict[str, str],
                timeout: tuple[float, float]) -> Reply:
        answer = self.client.open(path, method=method, data=body or None, headers=headers)
        return Reply(answer.status_code, urllib3.HTTPHeaderDict(answer.headers.items()),
                     answer.get_data())

    def close(self) -> None:
        pass


class RemoteError(EmsupplyError):
    """A problem answered by another service, passed on with its own status and fields."""

    def __init__(self, service: str, status: int, body: dict[str, Any]):
        super().__init__(f"{service}: {body.get('detail') or body.get('title') or status}",
                         errors=body.get("errors"),
                         extra={k: v for k, v in body.items()
                                if k not in ("type", "title", "status", "detail", "errors",
                                             "request_id")})
        self.status = status
        self.title = body.get("title") or "Upstream error"
        self.slug = str(body.get("type", "")).rsplit("/", 1)[-1] or "upstream"
        self.body = body


class ServiceClient:
    """Signed calls to one service, each with a connect and a read timeout."""

    def __init__(self, name: str, base_url: str, secret: str, *, connect_timeout: float = 1.0,
                 read_timeout: float = 10.0, pool_size: int = 20,
                 transport: Transport | None = None):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.timeout = (connect_timeout, read_timeout)
        self.transport = transport or PooledTransport(self.base_url, pool_size)

    def forward(self, method: str, path: str, identity: auth.Identity, body: bytes = b"",
                headers: dict[str, str] | None = None, *, signed_path: str | None = None,
                timeout: tuple[float, float] | None = None) -> Reply:
        """Pass one call on and return the answer whatever its status (the gateway's hop).

        `path` (with its query) is sent as given, percent-encoded; `signed_path` is the same
        path as the service will see it once decoded, which is what the signature covers.
        """
        signed = auth.sign(self.secret, identity, method, signed_path or path, body)
        return self._request(method, path, body, {**(headers or {}), **signed}, timeout)

    def fetch(self, path: str, timeout: tuple[float, float] | None = None) -> Reply:
        """An unsigned GET (health, the OpenAPI document), answered whatever its status."""
        return self._request("GET", path, b"", {}, timeout)

    def call(self, method: str, path: str, identity: auth.Identity, payload: Any = None, *,
             idempotency_key: str | None = None, request_id: str | None = None) -> Any:
        """A JSON call that returns the decoded answer or raises the remote problem."""
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if request_id:
            headers["X-Request-ID"] = request_id
        body = b""
        if payload is not None:
            body = json.dumps(payload, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        reply = self.forward(method, path, identity, body, headers)
        try:
            decoded = json.loads(reply.data) if reply.data else None
        except ValueError:
            decoded = None
        if reply.status >= 500 or (reply.status >= 400 and not isinstance(decoded, dict)):
            raise Unavailable(f"the {self.name} service failed ({reply.status})",
                              extra={"service": self.name, "upstream_status": reply.status})
        if reply.status >= 400:
            raise RemoteError(self.name, reply.status, decoded)
        return decoded

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str],
                 timeout: tuple[float, float] | None) -> Reply:
        """The one place where a transport's failure becomes the suite's error."""
        try:
            return self.transport.request(method, path, body, headers, timeout or self.timeout)
        except TimeoutError:
            raise UpstreamTimeout(f"the {self.name} service did not answer in time",
                                  extra={"service": self.name}) from None
        except ConnectionError:
            raise Unavailable(f"the {self.name} service is unreachable",
                              extra={"service": self.name}) from None

    def close(self) -> None:
        self.transport.close()
