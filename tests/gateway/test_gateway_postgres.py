"""The gateway's own database on PostgreSQL: migrations, ordered ingest under concurrency, the
webhook dispatcher's leases."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from gateway_helpers import assert_overlap_stored_once
from sqlalchemy import create_engine, select, text

from gateway.events import ingest, list_events
from gateway.models import Event, Webhook
from gateway.webhooks import Dispatcher
from shared.db import Database
from shared.migrate import upgrade

pytestmark = pytest.mark.postgres


@pytest.fixture
def gateway_db(pg_admin_url):
    """Overrides the SQLite one: a PostgreSQL database of this test's own."""
    name = f"emsupply_gw_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_admin_url.rsplit("/", 1)[0] + "/" + name
    upgrade("gateway", url)
    database = Database(url)
    yield database
    database.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def batch(start: int, count: int) -> list[dict]:
    now = datetime.now(UTC)
    return [{"id": i, "type": "stock.changed", "at": now, "data": {"n": i}}
            for i in range(start, start + count)]


def test_concurrent_ingests_commit_ids_in_order(gateway_db):
    """Two sources at once, and a reader polling with `after=`: the reader sees every event,
    never an id before a smaller one has committed."""
    stop = threading.Event()
    seen: list[int] = []

    def reader():
        after, deadline = 0, time.monotonic() + 30
        while (not stop.is_set() or len(seen) < 400) and time.monotonic() < deadline:
            with gateway_db.reading() as session:
                rows = list_events(session, after, None, 1000)
            if rows:
                seen.extend(row.id for row in rows)
                after = rows[-1].id

    def writer(source):
        for start in range(1, 201, 10):
            with gateway_db.unit_of_work() as session:
                ingest(session, source, batch(start, 10))

    threads = [threading.Thread(target=writer, args=(s,)) for s in ("inventory", "allocation")]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watcher.join(30)
    with gateway_db.reading() as session:
        ids = list(session.scalars(select(Event.id).order_by(Event.id)))
    assert len(ids) == 400
    assert seen == ids  # nothing skipped, nothing twice
    with gateway_db.unit_of_work() as session:  # a batch sent again is stored once
        assert ingest(session, "inventory", batch(1, 10))["stored"] == 0
    assert_overlap_stored_once(gateway_db, "inventory", 201)


def test_two_dispatchers_never_hold_the_same_subscription(gateway_db):
    with gateway_db.unit_of_work() as session:
        session.add(Webhook(url="http://127.0.0.1:9/x", events=["*"], secret="s" * 16,
                            active=True, created_by="t", created_at=datetime.now(UTC),
                            cursor=0, failures=0))
    first, second = Dispatcher(gateway_db), Dispatcher(gateway_db)
    try:
        with gateway_db.reading() as session:
            hook_id = session.scalar(select(Webhook.id))
        assert first._claim(hook_id)
        assert not second._claim(hook_id)
        first._release(hook_id)
        assert second._claim(hook_id)
    finally:
        first.close()
        second.close()
