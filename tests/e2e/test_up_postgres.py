"""`emsupply up` configured for production: each service on its own PostgreSQL database, a
Redis server of the environment's instead of the embedded one. Runs where CI's servers are
(EMSUPPLY_TEST_PG_URL, EMSUPPLY_TEST_REDIS_URL)."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import redis
from e2e_helpers import Up, clean_env, fresh_databases, run, wait_gone

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
REDIS_URL = os.environ.get("EMSUPPLY_TEST_REDIS_URL", "")


@pytest.fixture
def databases(pg_admin_url):
    """Three fresh databases, one per service, dropped afterwards."""
    yield from fresh_databases(pg_admin_url, "emsupply_e2e")


@pytest.mark.skipif(not REDIS_URL, reason="set EMSUPPLY_TEST_REDIS_URL to run against Redis")
def test_up_on_postgres_and_a_redis_server(tmp_path, databases):
    data_dir = tmp_path / "var"
    env = clean_env(EMSUPPLY_INVENTORY_DB=databases["inventory"],
                    EMSUPPLY_ALLOCATION_DB=databases["allocation"],
                    EMSUPPLY_GATEWAY_DB=databases["gateway"], EMSUPPLY_REDIS_URL=REDIS_URL,
                    EMSUPPLY_SECRET="e2e-postgres-secret-0123456789")
    suite = Up(data_dir, env=env)
    stream = redis.Redis.from_url(REDIS_URL)
    try:
        suite.wait_ready()
        assert "(embedded)" not in suite.output
        assert not list(data_dir.glob("*.sqlite"))
        token = run("token", "create", "--role", "admin", "--data-dir", str(data_dir),
                    env=env).stdout.strip()
        api = suite.session(token)
        sku = f"E2E-{uuid.uuid4().hex[:8].upper()}"
        for path, body in (("warehouses", {"code": "QDN", "name": "Q", "level": "prefecture"}),
                           ("items", {"sku": sku, "name": "Tent", "unit": "piece"}),
                           ("movements", {"warehouse": "QDN", "item": sku, "kind": "receipt",
                                          "quantity": 5})):
            answer = api.post(f"{suite.url}/api/v1/{path}", json=body, timeout=10)
            assert answer.status_code == 201, answer.text
        ready = api.get(f"{suite.url}/readyz", timeout=10).json()
        assert ready["status"] == "ready"
        # The relay ships the movement's event to the configured Redis server's stream.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            entries = stream.xrevrange("emsupply:events", count=200)
            if any(sku.encode() in fields.get(b"data", b"") for _, fields in entries):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the stock event never reached the Redis stream")
    finally:
        stream.close()
        code = suite.stop()
    assert code == 0, suite.output
    assert wait_gone(data_dir) == []
