"""Webhook subscriptions and their delivery.

Each subscription gets the events of its types one at a time, in the log's order, as
`POST url` with the event as the JSON body and `X-Emsupply-Signature: sha256=<hex HMAC-SHA256 of
the body with the subscription's secret>`. A delivery that fails (no answer, or not 2xx) is
recorded and tried again with exponential back-off (capped), and nothing later is sent to that
subscription until it succeeds: at-least-once, in order, with the event's `id` to de-duplicate
on. The subscription's `cursor` is the only state, so a receiver down for an hour gets the whole
hour when it is back. A lease on the subscription row keeps two dispatchers (two processes)
from delivering to the same subscription at once.

A subscriber names any URL, so the gateway would otherwise call inside its own network for
them: loopback, link-local, private and unspecified addresses and the suite's own ports are
refused (when subscribing, and again when delivering, after the name is resolved) unless the
admin allows internal targets (`EMSUPPLY_WEBHOOK_ALLOW_INTERNAL`). A URL never carries
user:password (it would be sent as Basic auth), and a failed delivery is recorded as what
kind of failure it was, never the connection error's text (which maps hosts and ports).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.events import last_id
from gateway.models import Delivery, Event, Webhook
from gateway.options import Options
from gateway.permissions import may, require
from gateway.schemas import ALL
from shared.auth import Identity
from shared.db import Database
from shared.errors import InvalidInput, NotFound

log = logging.getLogger("emsupply.webhooks")
SIGNATURE_HEADER = "X-Emsupply-Signature"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(event: Event) -> dict[str, Any]:
    at = event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)
    return {"id": event.id, "key": event.key, "source": event.source, "type": event.type,
            "at": at.astimezone(UTC).isoformat().replace("+00:00", "Z"), "data": event.data}


# --- where deliveries may go ----------------------------------------------------------------

@dataclass(frozen=True)
class Targets:
    """The URLs a subscription may name: `allow_internal` is the admin's setting, `ports` the
    suite's own (refused on any host, since a service may listen on a public address too)."""

    allow_internal: bool = False
    ports: frozenset[int] = field(default_factory=frozenset)

    def check(self, url: str) -> None:
        """422 naming `url` when a subscription may not name it."""
        parts = urlsplit(url)
        problem = self.refusal(url, resolve=False)
        if parts.username is not None or parts.password is not None:
            problem = "a URL with user:password is not sent; use the signature to authenticate"
        if problem:
            raise InvalidInput(f"webhook url refused: {problem}", errors={"url": [problem]})

    def refusal(self, url: str, resolve: bool = True) -> str | None:
        """Why `url` is refused, or None. With `resolve`, a host name is looked up and every
        address it has must be allowed; without, only names that cannot change are judged
        (an address, `localhost`), so a name that does not resolve yet may still subscribe."""
        parts = urlsplit(url)
        if self.allow_internal:
            return None
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return "the port is not a number from 0 to 65535"
        if port in self.ports:
            return f"port {port} is one of this suite's own services"
        host = (parts.hostname or "").rstrip(".").lower()
        if host == "localhost" or host.endswith(".localhost"):
            return "an internal address (loopback)"
        found = _addresses(host, port, socket.AI_NUMERICHOST)  # 127.1, 2130706433, 0x7f.1
        if found is None and resolve:
            found = _addresses(host, port)
        for address in found or ():  # none: a name not resolved (yet); delivery fails then
            kind = _internal(address)
            if kind:
                return f"an internal address ({kind})"
        return None


def _addresses(host: str, port: int,
               flags: int = 0) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address] | None:
    """Every address of `host` (with AI_NUMERICHOST: only when it is written as one)."""
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP, flags=flags)
    except (OSError, UnicodeError):
        return None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in found]


def _internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    for kind in ("loopback", "link_local", "private", "unspecified", "multicast", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None


def without_userinfo(url: str) -> str:
    """`url` without user:password, which HTTP clients would send as Basic auth."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


# --- the subscriptions, as the API changes them -------------------------------------------

def _visible(identity: Identity, query):
    return query if may(identity, "webhooks.all") else query.where(
        Webhook.created_by == identity.actor)


# Webhook ids are 32-bit: a larger id in a path names nothing (and PostgreSQL would refuse it).
MAX_HOOK_ID = 2 ** 31 - 1


def _find(session: Session, identity: Identity, hook_id: int, action: str) -> Webhook:
    require(identity, action)
    if not 0 < hook_id <= MAX_HOOK_ID:
        raise NotFound(f"no webhook {hook_id}")
    hook = session.scalar(_visible(identity, select(Webhook).where(Webhook.id == hook_id)))
    if hook is None:
        raise NotFound(f"no webhook {hook_id}")
    return hook


def create_webhook(session: Session, identity: Identity, data: dict[str, Any],
                   targets: Targets) -> Webhook:
    require(identity, "webhooks.write")
    targets.check(data["url"])
    hook = Webhook(url=data["url"], events=sorted(set(data["events"])), secret=data["secret"],
                   description=data.get("description"), active=True, created_by=identity.actor,
                   created_at=datetime.now(UTC),
                   cursor=data["after"] if "after" in data else last_id(session), failures=0)
    session.add(hook)
    session.flush()
    return hook


def get_webhook(session: Session, identity: Identity, hook_id: int) -> Webhook:
    return _find(session, identity, hook_id, "webhooks.read")


def list_webhooks(session: Session, identity: Identity, limit: int, after: int) -> list[Webhook]:
    require(identity, "webhooks.read")
    query = select(Webhook).where(Webhook.id > after).order_by(Webhook.id).limit(limit)
    return list(session.scalars(_visible(identity, query)))


def update_webhook(session: Session, identity: Identity, hook_id: int,
                   data: dict[str, Any], targets: Targets) -> Webhook:
    hook = _find(session, identity, hook_id, "webhooks.write")
    if "url" in data:
        targets.check(data["url"])
    for key in ("url", "secret", "description"):
        if key in data:
            setattr(hook, key, data[key])
    if "events" in data:
        hook.events = sorted(set(data["events"]))
    if "active" in data:
        hook.active = data["active"]
        if data["active"]:  # resumed: try at once
            hook.next_attempt_at = None
    session.flush()
    return hook


def delete_webhook(session: Session, identity: Identity, hook_id: int) -> None:
    hook = _find(session, identity, hook_id, "webhooks.write")
    session.execute(delete(Delivery).where(Delivery.webhook_id == hook.id))
    session.execute(delete(Webhook).where(Webhook.id == hook.id))


def list_deliveries(session: Session, identity: Identity, hook_id: int, limit: int,
                    after: int) -> list[Delivery]:
    hook = get_webhook(session, identity, hook_id)
    return list(session.scalars(select(Delivery).where(Delivery.webhook_id == hook.id,
                                                       Delivery.id > after)
                                .order_by(Delivery.id).limit(limit)))


# --- delivery ------------------------------------------------------------------------------

class Dispatcher:
    """Delivers what each due subscription has not had yet; `run` loops until stopped.

    Deliveries keep a requests session of their own rather than the services' client: they go
    to any URL a subscriber names (any host, https, a proxy from the environment), not to one
    base URL of the suite, and carry the subscription's signature, not the suite's identity."""

    def __init__(self, db: Database, options: Options | None = None, *, lease_s: float = 60.0,
                 backoff_s: float | None = None, http: requests.Session | None = None):
        options = options or Options()
        self.db = db
        self.timeout = (min(2.0, options.webhook_timeout_s), options.webhook_timeout_s)
        self.backoff_s = options.webhook_backoff_s if backoff_s is None else backoff_s
        self.max_backoff_s = options.webhook_max_backoff_s
        self.lease = timedelta(seconds=lease_s)
        self.owner = uuid.uuid4().hex
        self.http = http or requests.Session()
        self.targets = Targets(options.webhook_allow_internal)

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # the loop outlives a database hiccup
                log.exception("webhook dispatch failed; trying again")
                stop.wait(5)
            stop.wait(interval_s)

    def run_once(self) -> int:
        now = datetime.now(UTC)
        with self.db.reading() as session:
            newest = last_id(session)
            due = list(session.scalars(
                select(Webhook.id).where(
                    Webhook.active.is_(True), Webhook.cursor < newest,
                    or_(Webhook.next_attempt_at.is_(None), Webhook.next_attempt_at <= now),
                    or_(Webhook.lease_until.is_(None), Webhook.lease_until < now))
                .order_by(Webhook.id)))
        sent = 0
        for hook_id in due:
            if self._claim(hook_id):
                try:
                    sent += self._drain(hook_id)
                finally:
                    self._release(hook_id)
        return sent

    def _claim(self, hook_id: int) -> bool:
        now = datetime.now(UTC)
        with self.db.unit_of_work() as session:
            claimed = session.execute(
                update(Webhook).where(Webhook.id == hook_id, Webhook.active.is_(True),
                                      or_(Webhook.lease_until.is_(None),
                                          Webhook.lease_until < now))
                .values(lease_owner=self.owner, lease_until=now + self.lease)).rowcount
        return claimed == 1

    def _release(self, hook_id: int) -> None:
        with self.db.unit_of_work() as session:
            session.execute(update(Webhook).where(Webhook.id == hook_id,
                                                  Webhook.lease_owner == self.owner)
                            .values(lease_owner=None, lease_until=None))

    def _drain(self, hook_id: int) -> int:
        with self.db.reading() as session:
            hook = session.get(Webhook, hook_id)
            url, secret, wanted = hook.url, hook.secret, set(hook.events)
            cursor, failures = hook.cursor, hook.failures
        sent = 0
        while True:
            with self.db.reading() as session:
                batch = list(session.scalars(select(Event).where(Event.id > cursor)
                                             .order_by(Event.id).limit(100)))
            if not batch:
                return sent
            for event in batch:
                if ALL in wanted or event.type in wanted:
                    if not self._deliver(hook_id, url, secret, event, failures):
                        return sent
                    sent += 1
                    failures = 0
                cursor = event.id
            self._save(hook_id, cursor=cursor)

    def _deliver(self, hook_id: int, url: str, secret: str, event: Event,
                 failures: int) -> bool:
        body = json.dumps(payload(event), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, body),
                   "X-Emsupply-Event": event.type, "X-Emsupply-Event-Id": str(event.id),
                   "User-Agent": "emsupply-webhooks/1"}
        started = time.perf_counter()
        status, error = None, None
        refused = self.targets.refusal(url)
        try:
            if refused:
                error = f"refused: {refused}"
            else:
                answer = self.http.post(without_userinfo(url), data=body, headers=headers,
                                        timeout=self.timeout, allow_redirects=False)
                status = answer.status_code
                if not 200 <= status < 300:
                    error = f"answered {status}"
        except requests.Timeout:
            error = "no answer in time"
        except requests.ConnectionError:
            error = "could not connect"
        except requests.RequestException:
            error = "the request failed"
        ms = round((time.perf_counter() - started) * 1000, 2)
        ok = error is None
        now = datetime.now(UTC)
        metrics.WEBHOOK_DELIVERIES.labels("ok" if ok else "failed").inc()
        with self.db.unit_of_work() as session:
            session.add(Delivery(webhook_id=hook_id, event_id=event.id, attempt=failures + 1,
                                 ok=ok, status_code=status, error=error, duration_ms=ms, at=now))
            if ok:
                self._save(hook_id, session=session, cursor=event.id, failures=0,
                           next_attempt_at=None, last_error=None)
            else:
                self._save(hook_id, session=session, failures=failures + 1,
                           next_attempt_at=now + timedelta(seconds=self.backoff(failures + 1)),
                           last_error=error)
        return ok

    def backoff(self, failures: int) -> float:
        """Seconds before the next try after `failures` failures in a row (with jitter)."""
        base = min(self.max_backoff_s, self.backoff_s * 2 ** min(failures - 1, 30))
        return base * random.uniform(0.75, 1.0)

    def _save(self, hook_id: int, session: Session | None = None, **values) -> None:
        if session is None:
            with self.db.unit_of_work() as own:
                self._save(hook_id, own, **values)
            return
        values["lease_until"] = datetime.now(UTC) + self.lease
        session.execute(update(Webhook).where(Webhook.id == hook_id,
                                              Webhook.lease_owner == self.owner)
                        .values(**values))

    def close(self) -> None:
        self.http.close()
