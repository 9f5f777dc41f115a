"""The outbox relay: ships a service's events, in order, to the Redis stream `emsupply:events`
(when Redis is configured) and to the gateway's event log, then marks them published.

Each service writes an event into its `outbox` table in the same transaction as the change it
describes, so an event exists exactly when its change does. The relay reads the oldest
unpublished rows, publishes them, and only then marks them; anything that fails (Redis down, the
gateway down) leaves them in the outbox to be tried again, so nothing is lost and nothing
overtakes: at-least-once, in order. The gateway stores each (service, outbox id) once; on the
stream, each entry carries `key` = `<service>:<outbox id>` to de-duplicate on.

Where it runs: `emsupply up` runs one relay per service as a thread of the supervisor, beside
the webhook dispatcher (`emsupply.worker`); `python -m emsupply.worker` runs the same loop as a
process of its own (e.g. in a container). More than one relay per service is safe: on
PostgreSQL they take turns on an advisory lock, on SQLite on a lock file beside the database.
On PostgreSQL the read also takes a SHARE lock on the outbox for an instant, which waits for
the transactions still writing to it: an id is read only once every smaller id has committed
(ids are handed out before commit, so without it a later id could be published before an
earlier one that commits later).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import redis as redis_lib
from sqlalchemy import MetaData, select, text, update

from shared import auth
from shared.client import ServiceClient
from shared.db import Database
from shared.errors import EmsupplyError
from shared.tables import outbox_table

log = logging.getLogger("emsupply.relay")
STREAM = "emsupply:events"
INGEST_PATH = "/internal/v1/events"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Relay:
    def __init__(self, service: str, db: Database, *, secret: str,
                 gateway_url: str | None = None, redis: redis_lib.Redis | None = None,
                 stream: str = STREAM, batch: int = 500, stream_maxlen: int = 1_000_000):
        self.service = service
        self.db = db
        self.outbox = outbox_table(MetaData())
        self.redis = redis
        self.stream = stream
        self.batch = batch
        self.stream_maxlen = stream_maxlen
        self.identity = auth.Identity(f"relay:{service}", "service")
        self.gateway = (ServiceClient("gateway", gateway_url, secret, connect_timeout=1.0,
                                      read_timeout=10.0, pool_size=2) if gateway_url else None)
        self._failing_since: float | None = None

    # --- one round -------------------------------------------------------------------------

    def run_once(self) -> int:
        """Publish what is waiting, batch after batch; the number of events published."""
        total = 0
        with self._turn() as mine:
            if not mine:
                return 0
            while True:
                rows = self._pending()
                if not rows:
                    return total
                events = [{"id": r.id, "type": r.type, "at": _iso(r.at), "data": r.data}
                          for r in rows]
                if self.gateway is not None:
                    self._to_gateway(events)
                if self.redis is not None:
                    self._to_stream(events)
                with self.db.unit_of_work() as session:
                    session.execute(update(self.outbox)
                                    .where(self.outbox.c.id.in_([r.id for r in rows]))
                                    .values(published_at=datetime.now(UTC)))
                total += len(rows)
                if len(rows) < self.batch:
                    return total

    def _pending(self) -> list[Any]:
        table = self.outbox
        query = (select(table.c.id, table.c.type, table.c.at, table.c.data)
                 .where(table.c.published_at.is_(None)).order_by(table.c.id).limit(self.batch))
        with self.db.reading() as session:
            if not session.scalar(select(table.c.id).where(table.c.published_at.is_(None))
                                  .limit(1)):
                return []
        with self.db.unit_of_work() as session:
            if self.db.is_postgres:
                session.execute(text("SET LOCAL lock_timeout = '5s'"))
                session.execute(text("LOCK TABLE outbox IN SHARE MODE"))
            return list(session.execute(query))

    def _to_gateway(self, events: list[dict[str, Any]]) -> None:
        body = json.dumps({"source": self.service, "events": events},
                          separators=(",", ":")).encode()
        answer = self.gateway.forward("POST", INGEST_PATH, self.identity, body,
                                      {"Content-Type": "application/json"})
        if answer.status != 200:
            raise EmsupplyError(f"the gateway refused the events ({answer.status}): "
                                f"{answer.data[:200].decode(errors='replace')}")

    def _to_stream(self, events: list[dict[str, Any]]) -> None:
        pipe = self.redis.pipeline(transaction=True)
        for event in events:
            pipe.xadd(self.stream, {
                "key": f"{self.service}:{event['id']}", "source": self.service,
                "source_id": event["id"], "type": event["type"], "at": event["at"],
                "data": json.dumps(event["data"], ensure_ascii=False, separators=(",", ":")),
            }, maxlen=self.stream_maxlen, approximate=True)
        pipe.execute()

    @contextmanager
    def _turn(self) -> Iterator[bool]:
        """One relay per service database at a time."""
        if self.db.is_postgres:
            key = int.from_bytes(hashlib.sha256(b"emsupply-relay:" + self.service.encode())
                                 .digest()[:8], "big", signed=True)
            with self.db.engine.connect() as conn:
                mine = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                conn.commit()
                try:
                    yield bool(mine)
                finally:
                    if mine:
                        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
            return
        database = self.db.engine.url.database
        if not database or database == ":memory:":
            yield True
            return
        fd = os.open(f"{database}.relay-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    # --- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event, interval_s: float = 0.25) -> None:
        """Publish until `stop` is set; failures are logged once and retried with back-off."""
        delay = interval_s
        while not stop.is_set():
            try:
                self.run_once()
                if self._failing_since is not None:
                    log.info("%s relay: publishing again after %.0f s", self.service,
                             time.monotonic() - self._failing_since)
                    self._failing_since = None
                delay = interval_s
            except Exception as exc:  # Redis or the gateway down: the events wait in the outbox
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("%s relay: cannot publish (%s: %s); events wait in the outbox",
                                self.service, exc.__class__.__name__, exc)
                delay = min(5.0, max(interval_s, delay * 2))
            stop.wait(delay)

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()
