"""Events: outbox -> relay -> Redis stream and the gateway's log -> webhooks. Nothing lost when
Redis or a receiver is down for a while; everything in order; every delivery signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid

import pytest
import redis as redis_lib
from factories import build_tree
from flask import Flask, request
from gateway_helpers import Live, assert_overlap_stored_once, closed_port_url, issue
from ports import free_block
from sqlalchemy import MetaData, func, select

from gateway.webhooks import Dispatcher
from shared import auth
from shared.redis import EmbeddedRedis, connect
from shared.relay import Relay
from shared.tables import outbox_table


@pytest.fixture
def live_gateway(gateway_app, serve):
    return serve(gateway_app)


@pytest.fixture
def relay_for(inventory_db, suite_secret, live_gateway):
    relays = []

    def make(redis=None, stream=None):
        relay = Relay("inventory", inventory_db, secret=suite_secret,
                      gateway_url=live_gateway.url, redis=redis,
                      stream=stream or f"test:events:{uuid.uuid4().hex[:8]}")
        relays.append(relay)
        return relay
    yield make
    for relay in relays:
        relay.close()


def change_stock(caller, times: int, warehouse="KL-T01", item="TENT"):
    for _ in range(times):
        response = caller.post("/api/v1/movements", {"warehouse": warehouse, "item": item,
                                                     "kind": "receipt", "quantity": 1})
        assert response.status_code == 201, response.get_json()


def unpublished(db) -> int:
    table = outbox_table(MetaData())
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(table)
                              .where(table.c.published_at.is_(None)))


def outbox_ids(db) -> list[int]:
    table = outbox_table(MetaData())
    with db.reading() as session:
        return list(session.scalars(select(table.c.id).order_by(table.c.id)))


def test_relay_publishes_in_order_to_the_log_once(admin, inventory_db, relay_for):
    build_tree(admin)
    change_stock(admin, 5)
    relay = relay_for()
    published = relay.run_once()
    assert published == len(outbox_ids(inventory_db)) >= 5
    assert unpublished(inventory_db) == 0
    assert relay.run_once() == 0
    log = admin.get("/api/v1/events?limit=1000").get_json()
    assert [e["key"] for e in log["items"]] == [f"inventory:{i}" for i in outbox_ids(inventory_db)]
    assert [e["id"] for e in log["items"]] == sorted(e["id"] for e in log["items"])
    stock = [e for e in log["items"] if e["type"] == "stock.changed"]
    assert [e["data"]["on_hand"] for e in stock[-5:]] == [1, 2, 3, 4, 5]
    # a batch sent again (a relay that died before marking it) is stored once
    table = outbox_table(MetaData())
    with inventory_db.unit_of_work() as session:
        session.execute(table.update().values(published_at=None))
    assert relay.run_once() == published
    again = admin.get("/api/v1/events?limit=1000").get_json()["items"]
    assert [e["id"] for e in again] == [e["id"] for e in log["items"]]
    # paging with after=
    first = admin.get("/api/v1/events?limit=2").get_json()
    rest = admin.get(f"/api/v1/events?after={first['items'][-1]['id']}&limit=1000").get_json()
    assert [e["id"] for e in first["items"] + rest["items"]] == [e["id"] for e in again]
    only = admin.get("/api/v1/events?type=transfer.created").get_json()["items"]
    assert only == []


def test_an_overlapping_batch_is_stored_once_in_order(gateway_db):
    assert_overlap_stored_once(gateway_db, "inventory", 1)


def test_ingest_takes_only_a_service_signature(gateway_app, suite_secret):
    client = gateway_app.test_client()
    body = json.dumps({"source": "inventory", "events": []}).encode()
    assert client.post("/internal/v1/events", data=body).status_code == 401
    as_admin = auth.sign(suite_secret, auth.Identity("x", "admin"), "POST", "/internal/v1/events",
                         body)
    assert client.post("/internal/v1/events", data=body, headers=as_admin).status_code == 403
    bad = json.dumps({"source": "nowhere", "events": [{"id": "x"}]}).encode()
    as_relay = auth.sign(suite_secret, auth.Identity("relay:x", "service"), "POST",
                         "/internal/v1/events", bad)
    refused = client.post("/internal/v1/events", data=bad, headers=as_relay)
    assert refused.status_code == 422
    assert {"source", "events.0.id", "events.0.type"} <= set(refused.get_json()["errors"])
    token = issue(gateway_app, "admin")
    assert client.post("/internal/v1/events", data=body, headers={
        "Authorization": f"Bearer {token}"}).status_code == 401


def stream_keys(client: redis_lib.Redis, stream: str) -> list[str]:
    return [fields[b"key"].decode() for _, fields in client.xrange(stream)]


def test_redis_at_a_closed_port_then_the_real_one_loses_nothing(admin, inventory_db, relay_for,
                                                                redis_url):
    build_tree(admin)
    stream = f"test:events:{uuid.uuid4().hex[:8]}"
    down = connect(closed_port_url().replace("http", "redis"), timeout_s=0.2)
    relay = relay_for(redis=down, stream=stream)
    change_stock(admin, 3)  # stock updates succeed with Redis down
    with pytest.raises(redis_lib.ConnectionError):
        relay.run_once()
    assert unpublished(inventory_db) == len(outbox_ids(inventory_db))  # they wait
    change_stock(admin, 2)
    real = connect(redis_url)
    try:
        relay.redis = real
        assert relay.run_once() == len(outbox_ids(inventory_db))
        assert stream_keys(real, stream) == [f"inventory:{i}" for i in outbox_ids(inventory_db)]
        entry = real.xrange(stream, count=1)[0][1]
        assert entry[b"type"] == b"stock.changed"
        assert json.loads(entry[b"data"])["warehouse"] == "KL-T01"
        real.delete(stream)
    finally:
        real.close()
        down.close()
    keys = [e["key"] for e in admin.get("/api/v1/events?limit=1000").get_json()["items"]]
    assert keys == [f"inventory:{i}" for i in outbox_ids(inventory_db)]


def test_redis_stopped_and_restarted_loses_nothing(admin, inventory_db, relay_for, tmp_path):
    build_tree(admin)
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = connect(server.url, timeout_s=0.3)
    relay = relay_for(redis=client, stream="emsupply:events")
    try:
        change_stock(admin, 2)
        relay.run_once()
        server.stop()
        change_stock(admin, 3)  # Redis down: stock updates still succeed
        with pytest.raises(redis_lib.RedisError):
            relay.run_once()
        assert unpublished(inventory_db) == 3
        server.start()  # back, with what it had saved when it stopped
        assert relay.run_once() == 3
        assert unpublished(inventory_db) == 0
        assert stream_keys(client, "emsupply:events") == [
            f"inventory:{i}" for i in outbox_ids(inventory_db)]
    finally:
        client.close()
        server.stop()


class Receiver:
    """A webhook receiver that can be down (nothing listening) and then up."""

    def __init__(self, secret: str):
        self.secret = secret
        self.received: list[dict] = []
        self.bad_signatures = 0
        self.port = free_block(1)  # down then up again on the same port: keep it ours
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.live = None
        app = Flask("receiver")

        @app.post("/hook")
        def hook():
            body = request.get_data()
            expected = "sha256=" + hmac.new(self.secret.encode(), body,
                                            hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, request.headers.get(
                    "X-Emsupply-Signature", "")):
                self.bad_signatures += 1
                return "bad signature", 401
            event = json.loads(body)
            assert request.headers["X-Emsupply-Event-Id"] == str(event["id"])
            self.received.append(event)
            return "", 204
        self.app = app

    def up(self):
        self.live = Live(self.app, self.port)

    def down(self):
        if self.live:
            self.live.stop()
            self.live = None


def test_a_receiver_down_then_up_gets_every_event_signed_in_order(admin, as_role, gateway_app,
                                                                  inventory_db, relay_for):
    build_tree(admin)
    secret = "whsec-" + uuid.uuid4().hex
    receiver = Receiver(secret)
    integration = as_role("integration")
    created = integration.post("/api/v1/webhooks", {"url": receiver.url, "events": ["*"],
                                                    "secret": secret})
    assert created.status_code == 201, created.get_json()
    hook = created.get_json()
    assert "secret" not in hook
    filtered = integration.post("/api/v1/webhooks", {
        "url": receiver.url.replace("/hook", "/other"), "events": ["transfer.created"],
        "secret": secret}).get_json()
    relay = relay_for()
    state = gateway_app.extensions["gateway"]
    dispatcher = Dispatcher(state.db, state.options, backoff_s=0.05)
    dispatcher.max_backoff_s = 0.2
    stop = threading.Event()
    worker = threading.Thread(target=dispatcher.run, args=(stop, 0.02), daemon=True)
    worker.start()
    try:
        change_stock(admin, 4)
        relay.run_once()
        time.sleep(1.0)  # the receiver is down: several attempts fail
        change_stock(admin, 3)
        relay.run_once()
        state = integration.get(f"/api/v1/webhooks/{hook['id']}").get_json()
        assert state["failures"] >= 2 and state["last_error"]
        assert receiver.received == []
        receiver.up()
        deadline = time.monotonic() + 10
        expected = [e["id"] for e in admin.get("/api/v1/events?limit=1000").get_json()["items"]]
        while time.monotonic() < deadline and len(receiver.received) < len(expected):
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(5)
        receiver.down()
        dispatcher.close()
    assert [e["id"] for e in receiver.received] == expected  # every event, in order, once
    assert receiver.bad_signatures == 0
    assert {e["type"] for e in receiver.received} >= {"stock.changed"}
    deliveries = integration.get(f"/api/v1/webhooks/{hook['id']}/deliveries?limit=1000"
                                 ).get_json()["items"]
    failed = [d for d in deliveries if not d["ok"]]
    assert failed and all(d["event_id"] == expected[0] for d in failed)
    assert [d["event_id"] for d in deliveries if d["ok"]] == expected
    state = integration.get(f"/api/v1/webhooks/{hook['id']}").get_json()
    assert state["failures"] == 0 and state["cursor"] == expected[-1]
    other = integration.get(f"/api/v1/webhooks/{filtered['id']}/deliveries").get_json()
    assert other["items"] == []  # it subscribed to transfers only


def test_webhook_management(as_role, gateway_app):
    integration, other, viewer, admin = (as_role("integration"), as_role("integration"),
                                         as_role("viewer"), as_role("admin"))
    body = {"url": "http://127.0.0.1:9/x", "events": ["stock.changed"], "secret": "s" * 16}
    hook = integration.post("/api/v1/webhooks", body).get_json()
    assert viewer.post("/api/v1/webhooks", body).status_code == 403
    assert other.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404  # not its own
    assert admin.get(f"/api/v1/webhooks/{hook['id']}").status_code == 200
    bad = integration.post("/api/v1/webhooks", {**body, "events": ["nope"], "secret": "x"})
    assert bad.status_code == 422
    assert set(bad.get_json()["errors"]) == {"events", "secret"}
    assert integration.post("/api/v1/webhooks", {**body, "url": "ftp://x"}).status_code == 422
    paused = integration.patch(f"/api/v1/webhooks/{hook['id']}", {"active": False})
    assert paused.status_code == 200 and paused.get_json()["active"] is False
    assert integration.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert integration.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404
    again = integration.post("/api/v1/webhooks", body, headers={"Idempotency-Key": "w-1"})
    replay = integration.post("/api/v1/webhooks", body, headers={"Idempotency-Key": "w-1"})
    assert again.get_json() == replay.get_json()
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_back_off_is_capped_so_a_long_outage_is_caught_up_soon_after(gateway_db):
    """Ten minutes down is some 14 failed tries, none further apart than the cap (60 s by
    default): the receiver has its first event again within a minute of being back, and the
    cursor (not a retry budget) keeps every later one."""
    from gateway.options import Options

    dispatcher = Dispatcher(gateway_db, Options())
    try:
        waits = [dispatcher.backoff(n) for n in range(1, 200)]
    finally:
        dispatcher.close()
    assert 0.75 <= waits[0] <= 1.0
    assert all(0 < wait <= 60 for wait in waits)
    assert sum(waits[:14]) < 600 < sum(waits[:25])


def test_one_relay_per_service_database_at_a_time(admin, inventory_db, relay_for):
    build_tree(admin)
    change_stock(admin, 2)
    first, second = relay_for(), relay_for()
    with first._turn() as mine:
        assert mine
        assert second.run_once() == 0  # the other waits for its turn
        assert unpublished(inventory_db) == 2
    assert second.run_once() == 2
