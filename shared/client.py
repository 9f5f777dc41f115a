"""The one HTTP client for calls between services: pooled, signed, timeouts always set.

Failures of the other side become the suite's own errors: unreachable is Unavailable (503), too
slow is UpstreamTimeout (504), and a problem+json answer is raised again with its status, so a
409 with shortfalls from the inventory reaches the commander as a 409 with the same shortfalls.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from shared import auth
from shared.errors import EmsupplyError, Unavailable, UpstreamTimeout


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
    def __init__(self, name: str, base_url: str, secret: str, *, connect_timeout: float = 1.0,
                 read_timeout: float = 10.0, pool_size: int = 20):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.timeout = (connect_timeout, read_timeout)
        self.prefix = urlsplit(self.base_url).path
        self.pool = urllib3.connection_from_url(self.base_url, maxsize=pool_size, block=False)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def send(self, method: str, path: str, identity: auth.Identity, body: bytes = b"",
             headers: dict[str, str] | None = None,
             timeout: tuple[float, float] | None = None) -> requests.Response:
        """One signed call; `path` includes its query string exactly as it will be sent."""
        signed = auth.sign(self.secret, identity, method, path, body)
        all_headers = {**(headers or {}), **signed}
        if body:
            all_headers.setdefault("Content-Type", "application/json")
        try:
            return self.session.request(method, self.base_url + path, data=body or None,
                                        headers=all_headers, timeout=timeout or self.timeout,
                                        allow_redirects=False)
        except requests.Timeout:
            raise UpstreamTimeout(f"the {self.name} service did not answer in time",
                                  extra={"service": self.name}) from None
        except requests.ConnectionError:
            raise Unavailable(f"the {self.name} service is unreachable",
                              extra={"service": self.name}) from None

    def forward(self, method: str, path: str, identity: auth.Identity, body: bytes = b"",
                headers: dict[str, str] | None = None, *, signed_path: str | None = None,
                timeout: tuple[float, float] | None = None) -> urllib3.HTTPResponse:
        """Pass one call on and return the answer whatever its status (the gateway's hop):
        `.status`, `.headers`, `.data`.

        `path` (with its query) is sent as given, percent-encoded; `signed_path` is the same
        path as the service will see it once decoded, which is what the signature covers.
        Unreachable and too slow raise Unavailable and UpstreamTimeout, as in `send`. This
        path goes straight to urllib3's connection pool: the gateway makes it on every call,
        and requests' own preparation of a call costs about as much as the service's answer.
        """
        signed = auth.sign(self.secret, identity, method, signed_path or path, body)
        return self._urlopen(method, path, body, {**(headers or {}), **signed}, timeout)

    def fetch(self, path: str, timeout: tuple[float, float] | None = None
              ) -> urllib3.HTTPResponse:
        """An unsigned GET (health, the OpenAPI document), answered whatever its status."""
        return self._urlopen("GET", path, b"", {}, timeout)

    def _urlopen(self, method, path, body, headers, timeout) -> urllib3.HTTPResponse:
        connect, read = timeout or self.timeout
        try:
            return self.pool.urlopen(method, self.prefix + path, body=body or None, headers=headers,
                                     retries=False, redirect=False, assert_same_host=False,
                                     timeout=urllib3.Timeout(connect=connect, read=read))
        except urllib3.exceptions.ReadTimeoutError:
            raise UpstreamTimeout(f"the {self.name} service did not answer in time",
                                  extra={"service": self.name}) from None
        except urllib3.exceptions.HTTPError:  # refused, reset, connect timeout, bad answer
            raise Unavailable(f"the {self.name} service is unreachable",
                              extra={"service": self.name}) from None

    def call(self, method: str, path: str, identity: auth.Identity, payload: Any = None, *,
             idempotency_key: str | None = None, request_id: str | None = None) -> Any:
        """A JSON call that returns the decoded answer or raises the remote problem."""
        headers = {}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if request_id:
            headers["X-Request-ID"] = request_id
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        response = self.send(method, path, identity, body, headers)
        try:
            decoded = response.json() if response.content else None
        except ValueError:
            decoded = None
        if response.status_code >= 500 or (response.status_code >= 400 and
                                           not isinstance(decoded, dict)):
            raise Unavailable(f"the {self.name} service failed ({response.status_code})",
                              extra={"service": self.name, "upstream_status":
                                     response.status_code})
        if response.status_code >= 400:
            raise RemoteError(self.name, response.status_code, decoded)
        return decoded

    def close(self) -> None:
        self.session.close()
        self.pool.close()
