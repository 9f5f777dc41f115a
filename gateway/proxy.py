"""The hop: `/api/v1/<resource>/...` is passed on to the service that owns `<resource>`.

One client per service (shared.client.ServiceClient) over its instances (one URL, or several
sharing the service's database), each with its own pool, with a connect and a read timeout on
every call; calls go to the instances in turn. A call is tried again only where that is safe:
reads, and writes that carry an `Idempotency-Key` (the service answers the first response
again), and only when the instance could not be reached at all, on the next instance first; a
timeout is not retried (it would only double the wait). A circuit breaker per instance turns a
run of failures into skipping it, and when every instance's circuit is open into an immediate
503 that names the service, until a trial call after `reset_s` finds one back. A call that
fails slowly (a timeout, a 502 or 504) while other calls to the instance were answered says
nothing about the instance, only about that call (a large piece of work, a slow client): it
does not count towards opening the breaker.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

from flask import Request, Response

from gateway import metrics
from gateway.options import Options
from shared.auth import Identity
from shared.client import SAFE_METHODS, Breaker, ServiceClient
from shared.errors import NotFound, Unavailable

ROUTES = {
    "warehouses": "inventory", "items": "inventory", "stock": "inventory",
    "movements": "inventory", "transfers": "inventory", "stocktakes": "inventory",
    "reservations": "inventory",
    "roads": "allocation", "routes": "allocation", "incidents": "allocation",
    "allocations": "allocation", "replenishments": "allocation", "warnings": "allocation",
}
PREFIX = "/api/v1/"
FORWARDED_REQUEST_HEADERS = ("Content-Type", "Accept", "Accept-Language", "If-Match",
                             "If-None-Match", "If-Modified-Since", "Idempotency-Key")
RETURNED_HEADERS = ("Content-Type", "ETag", "Location", "Idempotency-Key", "Idempotent-Replayed",
                    "Retry-After", "Allow", "Cache-Control", "Last-Modified", "Link", "Vary")
PATH_SAFE = "/!$&'()*+,;=:@-._~"
__all__ = ["ROUTES", "SAFE_METHODS", "Breaker", "Upstream", "forward", "owner"]


def owner(path: str) -> str | None:
    """The service that owns `path` (under /api/v1/), or None."""
    if not path.startswith(PREFIX):
        return None
    return ROUTES.get(path[len(PREFIX):].split("/", 1)[0])


class _Metrics:
    """The client's observations of one service, as the gateway's metrics."""

    def __init__(self, name: str):
        self.name = name

    def answered(self, url: str, seconds: float) -> None:
        metrics.UPSTREAM_SECONDS.labels(self.name).observe(seconds)

    def failed(self, url: str, kind: str) -> None:
        metrics.UPSTREAM_FAILURES.labels(self.name, kind).inc()

    def circuits(self, open_count: int) -> None:
        metrics.BREAKER_OPEN.labels(self.name).set(open_count)


class Upstream:
    """One service behind the gateway: its instances (one URL or several), balanced by the one
    client (shared.client), each with its pool and its breaker."""

    def __init__(self, name: str, base_urls: str | Sequence[str], secret: str,
                 options: Options):
        self.name = name
        self.client = ServiceClient(name, base_urls, secret,
                                    connect_timeout=options.connect_timeout_s,
                                    read_timeout=options.read_timeout_s, pool_size=64,
                                    retries=options.retries,
                                    breaker=(options.breaker_failures, options.breaker_reset_s),
                                    observer=_Metrics(name))

    @property
    def breakers(self) -> list[Breaker]:
        return [instance.breaker for instance in self.client.instances]

    @property
    def breaker(self) -> Breaker:
        """The breaker of a service with one instance."""
        (breaker,) = self.breakers
        return breaker

    def call(self, method: str, path: str, signed_path: str, identity: Identity, body: bytes,
             headers: dict[str, str]):
        """The answer of one of the service's instances, whatever its status; tried again on
        the next where safe (a read, a write with an Idempotency-Key; see shared.client)."""
        return self.client.forward(method, path, identity, body, headers,
                                   signed_path=signed_path)

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
    answer = upstream.call(request.method, path, request.full_path.rstrip("?"), identity,
                           request.get_data(), headers)
    response = Response(answer.data, status=answer.status)
    del response.headers["Content-Type"]
    returned = answer.headers
    for key in RETURNED_HEADERS:
        value = returned.get(key)
        if value is not None:
            response.headers[key] = value
    metrics.PROXIED.labels(name, request.method, str(answer.status)).inc()
    return response
