"""The one HTTP client for calls between services: pooled, signed, timeouts always set, balanced.

A `ServiceClient` signs each call and hands it to a `Transport`, which only moves bytes: over
urllib3's connection pool between processes, or into a Flask app's test client when both
services live in one process (the CLI without a running suite, the API tests). Failures of the
other side become the suite's own errors in one place, `ServiceClient._request`: unreachable is
Unavailable (503), too slow is UpstreamTimeout (504), both naming the service; and `call` raises
a problem+json answer again with its status, so a 409 with shortfalls from the inventory reaches
the commander as a 409 with the same shortfalls.

A service may run as several instances sharing its database (`EMSUPPLY_INVENTORY_URL` a list).
`Upstreams` holds them, each with its own pool and, where asked, its own circuit `Breaker`, and
`_request` balances over them round robin, skipping an instance whose circuit is open. A call
that could not reach an instance is tried again (once on the next instance, or `retries` times)
only where that cannot do a thing twice: a read, or a write with an `Idempotency-Key` (the
services keep its answer in their shared database). Any other write is never sent again: it
may have reached the service. Nothing is tried again after a timeout.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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


SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))


class Breaker:
    """Closed while calls succeed; open after `failures` failures in a row, refusing at once;
    after `reset_s`, one trial call goes through (half-open) and its outcome decides.
    `on_change` is called after it opens or closes (the gateway's metric)."""

    def __init__(self, name: str, failures: int, reset_s: float, clock=time.monotonic,
                 on_change: Callable[[], None] | None = None):
        self.name = name
        self.threshold = failures
        self.reset_s = reset_s
        self.clock = clock
        self.on_change = on_change
        self.failures = 0
        self.opened_at: float | None = None
        self.answered_at = float("-inf")
        self.trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        opened_at = self.opened_at
        if opened_at is None:
            return "closed"
        return "half-open" if self.clock() >= opened_at + self.reset_s else "open"

    def admit(self) -> bool:
        """May a call go now? Closed: yes; half-open: this call is the trial, the others
        wait for its outcome; open: no."""
        if self.opened_at is None:
            return True
        with self._lock:
            if self.opened_at is None:
                return True
            if self.clock() >= self.opened_at + self.reset_s and not self.trial:
                self.trial = True
                return True
        return False

    def wait_s(self) -> int:
        """Whole seconds until a trial call may go (at least 1)."""
        opened_at = self.opened_at
        if opened_at is None:
            return 1
        return max(1, math.ceil(opened_at + self.reset_s - self.clock()))

    def before(self) -> None:
        """Admit the call, or raise the 503 of an open circuit."""
        if not self.admit():
            raise open_circuit(self.name, [self])

    def success(self) -> None:
        self.answered_at = self.clock()
        if self.failures or self.opened_at is not None:
            with self._lock:
                was_open = self.opened_at is not None
                self.failures, self.opened_at, self.trial = 0, None, False
            if was_open and self.on_change:
                self.on_change()

    def failure(self, started: float | None = None) -> None:
        """Count a failure; one of a call `started` before another call's success is not
        counted (the service was answering: the fault is that call's own)."""
        if started is not None and self.answered_at >= started:
            return
        with self._lock:
            was_open = self.opened_at is not None
            self.failures += 1
            if self.trial or self.failures >= self.threshold:
                self.opened_at = self.clock()
            self.trial = False
        if not was_open and self.opened_at is not None and self.on_change:
            self.on_change()


def open_circuit(name: str, breakers: Sequence[Breaker]) -> Unavailable:
    """The 503 of a service whose every instance's circuit is open."""
    seconds = min(b.wait_s() for b in breakers)
    threshold = breakers[0].threshold
    which = "it failed" if len(breakers) == 1 else f"each of its {len(breakers)} instances failed"
    return Unavailable(f"the {name} service is unavailable: {which} {threshold} times in a row, "
                       f"and it is tried again in {seconds} s",
                       extra={"service": name, "circuit": "open"},
                       headers={"Retry-After": str(seconds)})


class Observer(Protocol):
    """What a client's owner may count (the gateway's metrics), per instance `url`."""

    def answered(self, url: str, seconds: float) -> None: ...

    def failed(self, url: str, kind: str) -> None:
        """`kind`: unreachable or timeout."""

    def circuits(self, open_count: int) -> None:
        """How many of the service's instances have their circuit open now."""


@dataclass(eq=False)
class Instance:
    """One instance of a service: its URL, its transport (a pool of its own), its breaker."""

    url: str
    transport: Transport
    breaker: Breaker | None = None

    def failure(self, started: float | None = None) -> None:
        if self.breaker is not None:
            self.breaker.failure(started)

    def success(self) -> None:
        if self.breaker is not None:
            self.breaker.success()


class Upstreams:
    """The instances of one service, taken in turn (round robin), skipping those whose circuit
    is open; with one instance, always that one."""

    def __init__(self, name: str, instances: Sequence[Instance], first: int | None = None):
        if not instances:
            raise ValueError(f"no URL for the {name} service")
        self.name = name
        self.instances = tuple(instances)
        # Each process starts at an instance of its own (by default at random), so that the
        # workers of a service do not all send their first calls to the same instance.
        self.turn = itertools.count(random.randrange(len(self.instances)) if first is None
                                    else first)

    @classmethod
    def over(cls, name: str, urls: Sequence[str], *, pool_size: int = 20,
             breaker: tuple[int, float] | None = None, observer: Observer | None = None,
             transport: Transport | None = None) -> Upstreams:
        """One pooled transport per URL (or the one `transport` given, for a single URL);
        `breaker` = (failures, reset seconds) gives each instance a circuit breaker."""
        if transport is not None and len(urls) != 1:
            raise ValueError("a given transport serves one URL")
        made: list[Instance] = []
        on_change = None
        if observer is not None:
            def on_change() -> None:
                observer.circuits(sum(i.breaker is not None and i.breaker.opened_at is not None
                                      for i in made))
        for url in urls:
            url = url.rstrip("/")
            made.append(Instance(url, transport or PooledTransport(url, pool_size),
                                 Breaker(name, *breaker, on_change=on_change)
                                 if breaker else None))
        return cls(name, made)

    def pick(self, after: Instance | None = None) -> Instance:
        """The next instance whose circuit admits a call: in turn, or the one after `after`
        (where a call that failed there goes next). All open: the 503 of an open circuit."""
        count = len(self.instances)
        start = (self.instances.index(after) + 1 if after is not None
                 else next(self.turn)) % count
        for step in range(count):
            instance = self.instances[(start + step) % count]
            if instance.breaker is None or instance.breaker.admit():
                return instance
        raise open_circuit(self.name, [i.breaker for i in self.instances])

    def close(self) -> None:
        for instance in self.instances:
            instance.transport.close()


class ServiceClient:
    """Signed calls to one service (one URL, or several instances balanced), each with a
    connect and a read timeout.

    `retries`: how many times a call that could not reach the service is sent again, where
    that is safe (a read, or a write with an Idempotency-Key); by default once, on the next
    instance, when there are several, and never with one. With several instances a retry goes
    to the next instance at once; on the same one, after 50 ms, 100 ms ... `breaker` =
    (failures, reset seconds): a circuit breaker per instance (the gateway's)."""

    def __init__(self, name: str, base_url: str | Sequence[str], secret: str, *,
                 connect_timeout: float = 1.0, read_timeout: float = 10.0, pool_size: int = 20,
                 transport: Transport | None = None, retries: int | None = None,
                 breaker: tuple[int, float] | None = None, observer: Observer | None = None):
        urls = (base_url,) if isinstance(base_url, str) else tuple(base_url)
        self.name = name
        self.upstreams = Upstreams.over(name, urls, pool_size=pool_size, breaker=breaker,
                                        observer=observer, transport=transport)
        self.base_url = ",".join(i.url for i in self.upstreams.instances)
        self.secret = secret
        self.timeout = (connect_timeout, read_timeout)
        several = len(self.upstreams.instances) > 1
        # With several instances a call that could not reach one always gets one more try.
        self.retries = max(retries or 0, 1) if several else (retries or 0)
        self.observer = observer

    @property
    def instances(self) -> tuple[Instance, ...]:
        return self.upstreams.instances

    def forward(self, method: str, path: str, identity: auth.Identity, body: bytes = b"",
                headers: dict[str, str] | None = None, *, signed_path: str | None = None,
                timeout: tuple[float, float] | None = None) -> Reply:
        """Pass one call on and return the answer whatever its status (the gateway's hop).

        `path` (with its query) is sent as given, percent-encoded; `signed_path` is the same
        path as the service will see it once decoded, which is what the signature covers.
        Signed once: a retry sends the same call (the same nonce) again.
        """
        signed = auth.sign(self.secret, identity, method, signed_path or path, body)
        return self._request(method, path, body, {**(headers or {}), **signed}, timeout)

    def fetch(self, path: str, timeout: tuple[float, float] | None = None) -> Reply:
        """An unsigned GET (health, the OpenAPI document), answered whatever its status."""
        return self._request("GET", path, b"", {}, timeout)

    def fetch_each(self, path: str, timeout: tuple[float, float] | None = None
                   ) -> list[tuple[Instance, Reply | EmsupplyError]]:
        """An unsigned GET to every instance (readiness), each answer or failure; breakers
        are neither asked nor told."""
        found: list[tuple[Instance, Reply | EmsupplyError]] = []
        for instance in self.upstreams.instances:
            try:
                found.append((instance, self._send(instance, "GET", path, b"", {},
                                                   timeout or self.timeout)))
            except EmsupplyError as exc:
                found.append((instance, exc))
        return found

    def call(self, method: str, path: str, identity: auth.Identity, payload: Any = None, *,
             idempotency_key: str | None = None, request_id: str | None = None,
             timeout: tuple[float, float] | None = None) -> Any:
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
        reply = self.forward(method, path, identity, body, headers, timeout=timeout)
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
        """The one place where calls are balanced and tried again, and where a transport's
        failure becomes the suite's error."""
        retryable = method.upper() in SAFE_METHODS or "Idempotency-Key" in headers
        attempts = 1 + (self.retries if retryable else 0)
        timeout = timeout or self.timeout
        failed: Instance | None = None
        tried: list[Instance] = []
        for attempt in itertools.count():  # ends by an answer, or by the last attempt's error
            instance = self.upstreams.pick(after=failed)
            if instance in tried:  # no other instance left to go to: give it a moment
                time.sleep(0.05 * 2 ** (attempt - 1))
            tried.append(instance)
            breaker = instance.breaker
            begun = breaker.clock() if breaker is not None else 0.0
            started = time.perf_counter()
            try:
                reply = self._send(instance, method, path, body, headers, timeout)
            except UpstreamTimeout:
                instance.failure(begun)
                self._failed(instance, "timeout")
                raise
            except Unavailable:
                instance.failure()
                self._failed(instance, "unreachable")
                if attempt + 1 == attempts:
                    raise
                failed = instance
                continue
            if self.observer is not None:
                self.observer.answered(instance.url, time.perf_counter() - started)
            if reply.status in (502, 504):  # its own upstream failed it
                instance.failure(begun)
            else:
                instance.success()
            return reply

    def _send(self, instance: Instance, method: str, path: str, body: bytes,
              headers: dict[str, str], timeout: tuple[float, float]) -> Reply:
        try:
            return instance.transport.request(method, path, body, headers, timeout)
        except TimeoutError:
            raise UpstreamTimeout(f"the {self.name} service did not answer in time",
                                  extra={"service": self.name}) from None
        except ConnectionError:
            raise Unavailable(f"the {self.name} service is unreachable",
                              extra={"service": self.name}) from None

    def _failed(self, instance: Instance, kind: str) -> None:
        if self.observer is not None:
            self.observer.failed(instance.url, kind)

    def close(self) -> None:
        self.upstreams.close()
