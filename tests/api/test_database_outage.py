"""The database away (PostgreSQL stopped, a network cut): every service answers 503 with
Retry-After in problem+json, never 500, and says nothing was changed. A port where nothing
listens stands for the stopped server: the driver's error is the same "connection refused"."""

from __future__ import annotations

import pytest
from harness import Bearer, Caller
from ports import free_block

from shared.db import Database


@pytest.fixture
def dead_database():
    database = Database(f"postgresql+psycopg://postgres@127.0.0.1:{free_block(1)}/gone",
                        connect_args={"connect_timeout": 2})
    yield database
    database.dispose()


def assert_unavailable(response):
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 503 and "nothing was changed" in problem["detail"]
    assert problem["request_id"] == response.headers["X-Request-ID"]
    assert int(response.headers["Retry-After"]) > 0


def test_inventory_answers_503_for_reads_and_writes(settings_for, dead_database):
    from inventory_svc import create_app

    app = create_app(settings_for("inventory", dead_database.url), dead_database)
    caller = Caller(app.test_client())
    assert_unavailable(caller.get("/api/v1/stock?warehouse=KL"))
    assert_unavailable(caller.post("/api/v1/movements", {
        "warehouse": "KL", "item": "TENT", "kind": "receipt", "quantity": 1}))
    assert_unavailable(caller.post("/api/v1/movements", {
        "warehouse": "KL", "item": "TENT", "kind": "receipt", "quantity": 1},
        headers={"Idempotency-Key": "outage-1"}))
    assert app.test_client().get("/readyz").status_code == 503


def test_allocation_answers_503(settings_for, dead_database):
    from allocation_svc import create_app

    app = create_app(settings_for("allocation", dead_database.url), dead_database)
    caller = Caller(app.test_client())
    assert_unavailable(caller.get("/api/v1/incidents"))
    assert_unavailable(caller.as_("commander").post("/api/v1/incidents", {
        "type": "rainstorm", "sites": [{"id": "S1", "node": "n1"}]}))


def test_gateway_token_lookup_answers_503(settings_for, dead_database):
    from gateway import create_app
    from gateway.options import Options

    app = create_app(settings_for("gateway", dead_database.url), dead_database,
                     Options(token_cache_s=0, rate_limit="100000 per minute"))
    try:
        caller = Bearer(app.test_client(), "ems_" + "x" * 43)
        assert_unavailable(caller.get("/api/v1/warehouses"))
        assert_unavailable(caller.get("/api/v1/events"))
    finally:
        app.extensions["gateway"].close()
