"""The hop: routing, request ids, timeouts, retries, the circuit breaker, rate limits, health."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
import time

import pytest
from flask import Flask, jsonify, request
from gateway_helpers import Live, closed_port_url, issue

from gateway.proxy import Breaker, owner
from shared import auth
from shared.errors import Unavailable
from shared.logs import JsonFormatter


def bearer(app, role="admin", *scope):
    return {"Authorization": f"Bearer {issue(app, role, *scope)}"}


class FakeService:
    """A service that checks the gateway's signature and tells what it received."""

    def __init__(self, secret: str, delay_s: float = 0.0):
        self.calls: list[dict] = []
        self.delay_s = delay_s
        app = Flask("fake")

        @app.route("/api/v1/<path:rest>", methods=["GET", "POST", "PUT"])
        def anything(rest):
            identity = auth.verify(secret, request.headers, request.method,
                                   request.full_path.rstrip("?"), request.get_data())
            self.calls.append({"method": request.method, "path": request.full_path,
                               "identity": identity, "headers": dict(request.headers)})
            if self.delay_s:
                time.sleep(self.delay_s)
            return jsonify({"ok": True}), 200, {"ETag": '"v1"', "X-Internal": "secret"}

        @app.get("/readyz")
        def ready():
            return {"status": "ready"}
        self.live = Live(app)

    def stop(self):
        self.live.stop()


@pytest.fixture
def fake(suite_secret):
    service = FakeService(suite_secret)
    yield service
    service.stop()


def test_routes_by_resource():
    assert owner("/api/v1/warehouses/KL") == "inventory"
    assert owner("/api/v1/stock/summary") == "inventory"
    assert owner("/api/v1/incidents/3/allocations") == "allocation"
    assert owner("/api/v1/roads") == "allocation"
    assert owner("/api/v1/nothing") is None
    assert owner("/healthz") is None


def test_signed_identity_request_id_and_headers_are_passed_on(make_gateway, fake):
    app = make_gateway(inventory_url=fake.live.url)
    headers = {**bearer(app, "keeper", "KL-T01", "LP"), "X-Request-ID": "trace-42",
               "Idempotency-Key": "k-1", "X-Emsupply-Role": "admin"}
    response = app.test_client().post("/api/v1/movements?dry=1&x=%20y", json={"a": 1},
                                      headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.headers["X-Request-ID"] == "trace-42"
    assert response.headers["ETag"] == '"v1"'
    assert "X-Internal" not in response.headers
    (call,) = fake.calls
    assert call["identity"].role == "keeper"
    assert call["identity"].scope == ("KL-T01", "LP")
    assert call["path"] == "/api/v1/movements?dry=1&x=%20y"
    assert call["headers"]["X-Request-Id"] == "trace-42"
    assert call["headers"]["Idempotency-Key"] == "k-1"
    assert "Authorization" not in call["headers"]


def test_request_id_is_made_when_missing_or_malformed_and_is_in_every_log_line(gateway_app):
    client = gateway_app.test_client()
    headers = bearer(gateway_app)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("gateway"))
    root = logging.getLogger()
    level = root.level  # a test before, in this process, may have run the CLI's quieter suite
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        made = client.get("/api/v1/warehouses/NOPE", headers=headers)
        bad = client.get("/api/v1/warehouses/NOPE", headers={**headers,
                                                              "X-Request-ID": "no spaces ok"})
        given = client.get("/api/v1/warehouses/NOPE", headers={**headers,
                                                                "X-Request-ID": "abc-123"})
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    for response in (made, bad):
        assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])
    assert given.headers["X-Request-ID"] == "abc-123"
    for response in (made, bad, given):
        assert response.status_code == 404  # the inventory's answer...
        # ...made with the gateway's request id: it was passed on
        assert response.get_json()["request_id"] == response.headers["X-Request-ID"]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    ours = [line for line in lines if line["logger"].startswith("emsupply")]
    ids = [r.headers["X-Request-ID"] for r in (made, bad, given)]
    # one access line from the gateway and one from the inventory, with the same id
    assert sorted(line["request_id"] for line in ours
                  if line["logger"] == "emsupply.access") == sorted(ids * 2)
    assert all(line["request_id"] in ids for line in ours)


def test_paths_and_queries_that_need_quoting_keep_their_signature(admin):
    for path in ("/api/v1/warehouses/K%20L", "/api/v1/warehouses/%E6%9D%91",
                 "/api/v1/warehouses/a%2541"):
        assert admin.get(path).status_code == 404, path
    response = admin.get("/api/v1/warehouses?level=%E6%9D%91&x=1")
    assert response.status_code == 422, response.get_json()


def test_405_keeps_its_allow_header(admin):
    response = admin.delete("/api/v1/warehouses")  # the inventory's answer, passed on
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    own = admin.put("/api/v1/events", {})  # the gateway's own
    assert own.status_code == 405 and "GET" in own.headers["Allow"]
    assert own.mimetype == "application/problem+json"
    unknown = admin.get("/api/v1/nothing/here")
    assert unknown.status_code == 404 and unknown.mimetype == "application/problem+json"


def test_idempotent_replay_passes_through(admin):
    from factories import build_tree

    build_tree(admin)
    body = {"warehouse": "KL", "item": "TENT", "kind": "receipt", "quantity": 3}
    first = admin.post("/api/v1/movements", body, headers={"Idempotency-Key": "r-1"})
    again = admin.post("/api/v1/movements", body, headers={"Idempotency-Key": "r-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()


def test_a_service_that_is_down_is_503_at_once_and_named(gateway_app):
    headers = bearer(gateway_app)
    started = time.perf_counter()
    response = gateway_app.test_client().get("/api/v1/roads", headers=headers)
    assert time.perf_counter() - started < 1.0
    assert response.status_code == 503
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert problem["service"] == "allocation" and "allocation" in problem["detail"]
    assert problem["request_id"] == response.headers["X-Request-ID"]


def test_a_slow_service_is_504_after_the_read_timeout_and_not_retried(make_gateway,
                                                                       suite_secret):
    slow = FakeService(suite_secret, delay_s=1.5)
    try:
        app = make_gateway(inventory_url=slow.live.url, read_timeout_s=0.3)
        started = time.perf_counter()
        response = app.test_client().get("/api/v1/items", headers=bearer(app))
        elapsed = time.perf_counter() - started
    finally:
        slow.stop()
    assert response.status_code == 504
    assert response.get_json()["service"] == "inventory"
    assert elapsed < 1.2
    assert len(slow.calls) == 1


@pytest.mark.parametrize("method,key,attempts", [
    ("GET", None, 3), ("POST", None, 1), ("POST", "k-9", 3), ("PUT", None, 1)])
def test_retries_only_where_safe(make_gateway, fake, method, key, attempts):
    app = make_gateway(inventory_url=fake.live.url, retries=2)
    (instance,) = app.extensions["gateway"].upstreams["inventory"].client.instances
    real = instance.transport.request
    tries = []

    def flaky(*args, **kwargs):
        tries.append(1)
        if len(tries) < 3:
            raise ConnectionError("refused")
        return real(*args, **kwargs)

    instance.transport.request = flaky
    headers = bearer(app)
    if key:
        headers["Idempotency-Key"] = key
    response = app.test_client().open("/api/v1/items", method=method, headers=headers,
                                      json={} if method != "GET" else None)
    assert len(tries) == attempts
    assert response.status_code == (200 if attempts == 3 else 503)


def test_the_circuit_opens_after_failures_and_answers_at_once(make_gateway):
    app = make_gateway(breaker_failures=3, breaker_reset_s=30, retries=0)
    client = app.test_client()
    headers = bearer(app)
    upstream = app.extensions["gateway"].upstreams["allocation"]
    for _ in range(3):
        assert client.get("/api/v1/roads", headers=headers).get_json().get("circuit") is None
    assert upstream.breaker.state == "open"
    calls = []
    upstream.client.instances[0].transport.request = lambda *a, **k: calls.append(1)
    response = client.get("/api/v1/incidents/1", headers=headers)
    assert response.status_code == 503
    assert response.get_json()["circuit"] == "open"
    assert response.get_json()["service"] == "allocation"
    assert 1 <= int(response.headers["Retry-After"]) <= 30
    assert calls == []  # not even tried
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'emsupply_gateway_circuit_open{service="allocation"} 1.0' in metrics


def test_breaker_half_open_lets_one_trial_through():
    now = [0.0]
    breaker = Breaker("inventory", failures=2, reset_s=10, clock=lambda: now[0])
    breaker.before()
    breaker.failure()
    breaker.before()
    breaker.failure()
    assert breaker.state == "open"
    with pytest.raises(Unavailable):
        breaker.before()
    now[0] = 10.5
    assert breaker.state == "half-open"
    breaker.before()  # the trial
    with pytest.raises(Unavailable):
        breaker.before()  # others wait for its outcome
    breaker.failure()  # the trial failed: open again, for another reset_s
    with pytest.raises(Unavailable):
        breaker.before()
    now[0] = 21
    breaker.before()
    breaker.success()
    assert breaker.state == "closed"
    breaker.before()


def test_breaker_is_safe_under_threads():
    breaker = Breaker("inventory", failures=1000, reset_s=1)

    def hammer():
        for _ in range(500):
            breaker.before()
            breaker.failure()
            breaker.success()
    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert breaker.state == "closed"


@pytest.mark.parametrize("storage", ["memory", "redis"])
def test_rate_limit_per_token_with_retry_after(make_gateway, live_inventory, storage, request):
    redis_url = request.getfixturevalue("redis_url") if storage == "redis" else None
    app = make_gateway(inventory_url=live_inventory.url, redis_url=redis_url,
                       rate_limit="3 per minute")
    client = app.test_client()
    first, second = bearer(app, "viewer"), bearer(app, "viewer")
    for _ in range(3):
        assert client.get("/api/v1/items", headers=first).status_code == 200
    refused = client.get("/api/v1/events", headers=first)
    assert refused.status_code == 429
    assert refused.mimetype == "application/problem+json"
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert refused.get_json()["request_id"]
    assert client.get("/api/v1/items", headers=second).status_code == 200  # per token
    assert client.get("/healthz").status_code == 200  # health is not limited


def test_redis_down_does_not_stop_calls(make_gateway, live_inventory):
    app = make_gateway(inventory_url=live_inventory.url,
                       redis_url=closed_port_url().replace("http", "redis"),
                       rate_limit="100 per minute")
    client = app.test_client()
    headers = bearer(app)
    logging.disable(logging.CRITICAL)  # the rate limits and the check log Redis's failure
    try:
        for _ in range(3):
            assert client.get("/api/v1/items", headers=headers).status_code == 200
    finally:
        logging.disable(logging.NOTSET)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert set(ready.get_json()["failures"]) == {"redis"}


def test_health_readiness_and_metrics(make_gateway, live_inventory, redis_url):
    app = make_gateway(inventory_url=live_inventory.url, redis_url=redis_url,
                       required_services=("inventory", "allocation"))
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503  # allocation is down
    failures = ready.get_json()["failures"]
    assert set(failures) == {"allocation"} and "unreachable" in failures["allocation"]
    assert failures["allocation"].endswith(" at " + app.extensions["gateway"].settings
                                           .allocation_url)
    assert ready.get_json()["checks"]["allocation"] == [{
        "url": app.extensions["gateway"].settings.allocation_url, "ready": False,
        "circuit": "closed", "detail": failures["allocation"]}]
    ok = make_gateway(inventory_url=live_inventory.url, redis_url=redis_url)
    assert ok.test_client().get("/readyz").get_json() == {"status": "ready", "checks": {
        "inventory": [{"url": live_inventory.url, "ready": True, "circuit": "closed"}]}}
    client.get("/api/v1/items", headers=bearer(app))
    text = client.get("/metrics").get_data(as_text=True)
    assert 'emsupply_gateway_proxied_requests_total{method="GET",service="inventory",' \
           'status="200"}' in text
    assert "emsupply_gateway_upstream_seconds_bucket" in text
