"""The hop: `/api/v1/<resource>/...` is passed on to the service that owns `<resource>`.

One pooled client per service (shared.client.ServiceClient) with a connect and a read timeout on
every call. A call is tried again only where that is safe: reads, and writes that carry an
`Idempotency-Key` (the service answers the first response again), and only when the service
could not be reached at all; a timeout is not retried (it would only double the wait). A circuit
breaker per service turns a run of failures into an immediate 503 that names the service, until
a trial call after `reset_s` finds it back. A call that fails slowly (a timeout, a 502 or 504)
while other calls to the service were answered says nothing about the service, only about that
call (a large piece of work, a slow client): it does not count towards opening the breaker.
"""

from __future__ import annotations

import math
import threading
import time
from urllib.parse import quote

from flask import Request, Response

from gateway import metrics
from gateway.options import Options
from shared.auth import Identity
from shared.client import ServiceClient
from shared.errors import NotFound, Unavailable, UpstreamTimeout

ROUTES = {
    "warehouses": "inventory", "items": "inventory", "stock": "inventory",
    "movements": "inventory", "transfers": "inventory", "stocktakes": "inventory",
    "reservations": "inventory",
    "roads": "allocation", "routes": "allocation", "incidents": "allocation",
    "allocations": "allocation", "replenishments": "allocation", "warnings": "allocation",
}
PREFIX = "/api/v1/"
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "Accept-Language", "If-Match",
                             "If-None-Match", "If-Modified-Since", "Idempotency-Key")
RETURNED_HEADERS = ("Content-Type", "ETag", "Location", "Idempotency-Key", "Idempotent-Replayed",
                    "Retry-After", "Allow", "Cache-Control", "Last-Modified", "Link", "Vary")
PATH_SAFE = "/!$&'()*+,;=:@-._~"


def owner(path: str) -> str | None:
    """The service that owns `path` (under /api/v1/), or None."""
    if not path.startswith(PREFIX):
        return None
    return ROUTES.get(path[len(PREFIX):].split("/", 1)[0])


class Breaker:
    """Closed while calls succeed; open after `failures` failures in a row, answering at once;
    after `reset_s`, one trial call goes through (half-open) and its outcome decides."""

    def __init__(self, name: str, failures: int, reset_s: float, clock=time.monotonic):
        self.name = name
        self.threshold = failures
        self.reset_s = reset_s
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.answered_at = float("-inf")
        self.trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() >= self.opened_at + self.reset_s else "open"

    def before(self) -> None:
        if self.opened_at is None:
            return
        with self._lock:
            if self.opened_at is None:
                return
            wait = self.opened_at + self.reset_s - self.clock()
            if wait <= 0 and not self.trial:
                self.trial = True  # this call is the trial; the others wait for its outcome
                return
        seconds = max(1, math.ceil(wait))
        raise Unavailable(f"the {self.name} service is unavailable: it failed {self.threshold} "
                          f"times in a row, and the gateway tries it again in {seconds} s",
                          extra={"service": self.name, "circuit": "open"},
                          headers={"Retry-After": str(seconds)})

    def success(self) -> None:
        self.answered_at = self.clock()
        if self.failures or self.opened_at is not None:
            with self._lock:
                self.failures, self.opened_at, self.trial = 0, None, False
            metrics.BREAKER_OPEN.labels(self.name).set(0)

    def failure(self, started: float | None = None) -> None:
        """Count a failure; one of a call `started` before another call's success is not
        counted (the service was answering: the fault is that call's own)."""
        if started is not None and self.answered_at >= started:
            return
        with self._lock:
            self.failures += 1
            if self.trial or self.failures >= self.threshold:
                self.opened_at = self.clock()
            self.trial = False
        if self.opened_at is not None:
            metrics.BREAKER_OPEN.labels(self.name).set(1)


class Upstream:
    """One service behind the gateway: its pooled client and its breaker."""

    def __init__(self, name: str, base_url: str, secret: str, options: Options):
        self.name = name
        self.client = ServiceClient(name, base_url, secret,
                                    connect_timeout=options.connect_timeout_s,
                                    read_timeout=options.read_timeout_s, pool_size=64)
        self.breaker = Breaker(name, options.breaker_failures, options.breaker_reset_s)
        self.retries = options.retries

    def call(self, method: str, path: str, signed_path: str, identity: Identity, body: bytes,
             headers: dict[str, str], retryable: bool):
        attempts = 1 + (self.retries if retryable else 0)
        for attempt in range(attempts):
            self.breaker.before()
            started, begun = time.perf_counter(), self.breaker.clock()
            try:
                response = self.client.forward(method, path, identity, body, headers,
                                               signed_path=signed_path)
            except Unavailable:
                self.breaker.failure()
                metrics.UPSTREAM_FAILURES.labels(self.name, "unreachable").inc()
                if attempt + 1 == attempts:
                    raise
                time.sleep(0.05 * 2 ** attempt)
                continue
            except UpstreamTimeout:
                self.breaker.failure(begun)
                metrics.UPSTREAM_FAILURES.labels(self.name, "timeout").inc()
                raise
            metrics.UPSTREAM_SECONDS.labels(self.name).observe(time.perf_counter() - started)
            if response.status in (502, 504):
                self.breaker.failure(begun)
            else:
                self.breaker.success()
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.client.close()


def forward(upstreams: dict[str, Upstream], request: Request, identity: Identity,
            request_id: str) -> Response:
    name = owner(request.path)
    if name is None:
        raise NotFound(f"no resource at {request.path}")
    upstream = upstreams.get(name)
    if upstream is None:
        raise Unavailable(f"the {name} service is not configured on this gateway",
                          extra={"service": name})
    headers = {"X-Request-ID": request_id}
    incoming = request.headers
    for key in FORWARDED_REQUEST_HEADERS:
        value = incoming.get(key)
        if value is not None:
            headers[key] = value
    query = request.query_string.decode("latin-1")
    path = quote(request.path, safe=PATH_SAFE) + ("?" + query if query else "")
    retryable = request.method in SAFE_METHODS or "Idempotency-Key" in incoming
    answer = upstream.call(request.method, path, request.full_path.rstrip("?"), identity,
                           request.get_data(), headers, retryable)
    response = Response(answer.data, status=answer.status)
    del response.headers["Content-Type"]
    returned = answer.headers
    for key in RETURNED_HEADERS:
        value = returned.get(key)
        if value is not None:
            response.headers[key] = value
    metrics.PROXIED.labels(name, request.method, str(answer.status)).inc()
    return response
