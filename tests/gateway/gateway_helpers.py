"""Helpers for the gateway's tests: live servers, closed ports, options, tokens."""

from __future__ import annotations

import threading
import uuid

from ports import free_block
from werkzeug.serving import make_server

from gateway.options import Options


class Live:
    """A WSGI app on a real port (any free one unless given), in a thread."""

    def __init__(self, app, port: int = 0):
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def closed_port_url() -> str:
    """A URL where nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_block(1)}"


def quick_options(**changes) -> Options:
    base = dict(connect_timeout_s=0.5, read_timeout_s=5.0, retries=2, breaker_failures=50,
                breaker_reset_s=1.0, rate_limit="100000 per minute", token_cache_s=0,
                required_services=("inventory",), webhook_timeout_s=1.0,
                webhook_backoff_s=0.05, webhook_max_backoff_s=0.2,
                limiter_prefix=f"test-{uuid.uuid4().hex[:8]}",
                webhook_allow_internal=True)  # the tests' receivers are on 127.0.0.1
    return Options(**{**base, **changes})


def issue(app, role: str, *warehouses: str, name: str | None = None) -> str:
    from gateway import tokens

    with app.extensions["gateway"].db.unit_of_work() as session:
        return tokens.create(session, role, warehouses, name or f"{role}-{uuid.uuid4().hex[:6]}"
                             ).token


def assert_overlap_stored_once(db, source: str, start: int) -> None:
    """A batch of events `start`..`start+5`, then one that overlaps it: the overlap is not
    stored again, the new events get log ids in their outbox order, and each new event (only
    those) is filed under what it is about."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from gateway.events import ingest
    from gateway.models import Event, EventEntity

    now = datetime.now(UTC)

    def batch(first: int, last: int) -> list[dict]:  # sent out of order, as a relay may not
        return [{"id": i, "type": "stock.changed", "at": now,
                 "data": {"warehouse": f"W{i}", "item": "TENT"}}
                for i in range(last, first - 1, -1)]

    with db.unit_of_work() as session:
        assert ingest(session, source, batch(start, start + 5))["stored"] == 6
    with db.unit_of_work() as session:
        answer = ingest(session, source, batch(start + 3, start + 9))
    assert answer == {"received": 7, "stored": 4, "last": start + 9}
    with db.reading() as session:
        rows = session.execute(select(Event.id, Event.source_id).where(
            Event.source == source, Event.source_id >= start).order_by(Event.id)).all()
        assert [source_id for _, source_id in rows] == list(range(start, start + 10))
        filed = session.execute(select(EventEntity.entity, EventEntity.event_id).where(
            EventEntity.event_id.in_([event_id for event_id, _ in rows]))).all()
    by_source = dict((event_id, source_id) for event_id, source_id in rows)
    assert sorted((by_source[event_id], entity) for entity, event_id in filed) == sorted(
        (i, name) for i in range(start, start + 10) for name in (f"warehouse:W{i}", "item:TENT"))
