"""Fixtures shared by every layer: settings on a temporary data directory, databases (SQLite
always; PostgreSQL wherever EMSUPPLY_TEST_PG_URL names a server), apps and signed callers."""

from __future__ import annotations

import os
import uuid

import pytest
from harness import SECRET, Caller, fresh_pg_schema, migrated
from sqlalchemy import create_engine, text

from shared.config import load_settings

# The caller and the schema reset live in harness.py (the gateway's tests share them); tests
# that import them from here keep doing so.
__all__ = ["SECRET", "Caller", "fresh_pg_schema"]
PG_URL = os.environ.get("EMSUPPLY_TEST_PG_URL", "")


def pytest_collection_modifyitems(config, items):
    if PG_URL:
        return
    skip = pytest.mark.skip(reason="set EMSUPPLY_TEST_PG_URL to run against PostgreSQL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def pg_admin_url():
    if not PG_URL:
        pytest.skip("set EMSUPPLY_TEST_PG_URL to run against PostgreSQL")
    return PG_URL


def _own_pg_database(admin_url: str, worker: str, purpose: str):
    """A database of this test worker's own, created once and dropped at the end."""
    name = f"emsupply_test_{purpose}_{worker}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_database(pg_admin_url, worker_id):
    yield from _own_pg_database(pg_admin_url, worker_id, "inv")


@pytest.fixture(scope="session")
def pg_allocation_database(pg_admin_url, worker_id):
    """The allocation service's own database beside the inventory's (each owns its own)."""
    yield from _own_pg_database(pg_admin_url, worker_id, "alloc")


@pytest.fixture(scope="session")
def worker_id(request):
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """Each API test runs on SQLite, and on PostgreSQL when a server is configured."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.sqlite'}"
    return request.getfixturevalue("pg_database")


@pytest.fixture
def settings_for(tmp_path):
    def make(service: str, url: str, **env):
        values = {"EMSUPPLY_SECRET": SECRET, f"EMSUPPLY_{service.upper()}_DB": url, **env}
        return load_settings(service, values, data_dir=tmp_path)
    return make


@pytest.fixture
def inventory_db(db_url):
    yield from migrated("inventory_svc", db_url)


@pytest.fixture
def inventory_app(inventory_db, settings_for):
    from inventory_svc import create_app

    return create_app(settings_for("inventory", inventory_db.url), inventory_db)


@pytest.fixture
def inv(inventory_app) -> Caller:
    return Caller(inventory_app.test_client())


@pytest.fixture
def allocation_db(tmp_path, db_url, request):
    """On the same kind of database as the inventory of the test."""
    if db_url.startswith("postgresql"):
        url = request.getfixturevalue("pg_allocation_database")
    else:
        url = f"sqlite:///{tmp_path / 'allocation.sqlite'}"
    yield from migrated("allocation_svc", url)


@pytest.fixture
def allocation_app(allocation_db, inventory_app, settings_for):
    """The allocation service, reaching the inventory app in this process."""
    from allocation_svc import create_app
    from shared.client import InProcessTransport, ServiceClient

    client = ServiceClient("inventory", "http://in-process", SECRET,
                           transport=InProcessTransport(inventory_app))
    return create_app(settings_for("allocation", allocation_db.url), allocation_db, client)


@pytest.fixture
def alloc(allocation_app) -> Caller:
    return Caller(allocation_app.test_client())
