"""Fixtures for the gateway: services served over real HTTP (werkzeug threads), a gateway app
in front of them, tokens, and callers that carry a bearer token."""

from __future__ import annotations

import os

import pytest
from gateway_helpers import Live, closed_port_url, issue, quick_options
from harness import Bearer, migrated

REDIS_URL = os.environ.get("EMSUPPLY_TEST_REDIS_URL", "")


@pytest.fixture
def serve():
    """`serve(app)` -> the app on a real port (a `Live`), stopped at the end of the test."""
    served: list[Live] = []

    def start(app) -> Live:
        served.append(Live(app))
        return served[-1]
    yield start
    for live in reversed(served):
        live.stop()


@pytest.fixture
def live_inventory(inventory_app, serve):
    return serve(inventory_app)


@pytest.fixture
def suite_secret(settings_for) -> str:
    return settings_for("gateway", "sqlite://").secret


@pytest.fixture
def live_allocation(allocation_db, settings_for, live_inventory, serve):
    """The allocation service over HTTP, in front of the live inventory."""
    from allocation_svc import create_app

    return serve(create_app(settings_for("allocation", allocation_db.url,
                                         EMSUPPLY_INVENTORY_URL=live_inventory.url),
                            allocation_db))


@pytest.fixture
def gateway_db(tmp_path):
    yield from migrated("gateway", f"sqlite:///{tmp_path / 'gateway.sqlite'}")


@pytest.fixture
def make_gateway(settings_for, gateway_db):
    """`make(inventory_url=..., allocation_url=..., redis_url=None, **options)` -> app."""
    apps = []

    def make(inventory_url: str | None = None, allocation_url: str | None = None,
             redis_url: str | None = None, **changes):
        from gateway import create_app

        env = {"EMSUPPLY_INVENTORY_URL": inventory_url or closed_port_url(),
               "EMSUPPLY_ALLOCATION_URL": allocation_url or closed_port_url()}
        if redis_url:
            env["EMSUPPLY_REDIS_URL"] = redis_url
        app = create_app(settings_for("gateway", gateway_db.url, **env), gateway_db,
                         quick_options(**changes))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["gateway"].close()


@pytest.fixture
def gateway_app(make_gateway, live_inventory):
    return make_gateway(inventory_url=live_inventory.url)


@pytest.fixture
def as_role(gateway_app):
    """`as_role("keeper", "KL-T01")` -> a Bearer caller through the gateway."""
    client = gateway_app.test_client()

    def make(role: str, *warehouses: str) -> Bearer:
        return Bearer(client, issue(gateway_app, role, *warehouses))
    return make


@pytest.fixture
def admin(as_role) -> Bearer:
    return as_role("admin")


@pytest.fixture
def redis_url(tmp_path_factory):
    """A real Redis: CI's (EMSUPPLY_TEST_REDIS_URL), else the embedded one of the suite."""
    if REDIS_URL:
        yield REDIS_URL
        return
    from shared.redis import EmbeddedRedis

    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as embedded:
        yield embedded.url
