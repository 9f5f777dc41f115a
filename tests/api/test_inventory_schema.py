"""The generated OpenAPI document covers the contract; Alembic has one head and the migrated
database is exactly what the models describe."""

from __future__ import annotations

import re

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from factories import build_tree, receive
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from inventory_svc.ledger import QUANTITY_RULE
from inventory_svc.models import Base
from shared.migrate import heads

CONTRACT = {  # path (parameters written {…}) -> methods, from the Inventory table
    "/api/v1/warehouses": {"get", "post"},
    "/api/v1/warehouses/{}": {"get", "patch"},
    "/api/v1/warehouses/{}/levels": {"put"},
    "/api/v1/items": {"get", "post"},
    "/api/v1/items/{}": {"get"},
    "/api/v1/stock": {"get"},
    "/api/v1/stock/summary": {"get"},
    "/api/v1/movements": {"get", "post"},
    "/api/v1/movements/batch": {"post"},
    "/api/v1/transfers": {"post"},
    "/api/v1/transfers/{}/receive": {"post"},
    "/api/v1/stocktakes": {"post"},
    "/api/v1/reservations": {"post"},
    "/api/v1/reservations/{}/commit": {"post"},
    "/api/v1/reservations/{}/release": {"post"},
}
QUERIES = {
    ("/api/v1/warehouses", "get"): {"level", "parent", "status", "limit", "cursor"},
    ("/api/v1/stock", "get"): {"warehouse", "item", "subtree", "below_min", "limit", "cursor"},
    ("/api/v1/stock/summary", "get"): {"item", "by"},
    ("/api/v1/movements", "get"): {"warehouse", "item", "since", "limit", "cursor"},
}


def test_openapi_covers_the_contract(inv):
    response = inv.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    paths = {re.sub(r"\{[^}]+\}", "{}", path): spec for path, spec in document["paths"].items()}
    for path, methods in CONTRACT.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    for (path, method), names in QUERIES.items():
        declared = {p["name"] for p in paths[path][method].get("parameters", [])
                    if p["in"] == "query"}
        assert names <= declared, (path, declared)
    schemas = document["components"]["schemas"]
    movement = schemas["MovementIn"]
    assert set(movement["required"]) == {"warehouse", "item", "kind", "quantity"}
    assert movement["properties"]["kind"]["enum"] == ["receipt", "issue", "adjustment"]
    assert {"lot", "expires_on", "reason", "reference"} <= set(movement["properties"])
    assert movement.get("additionalProperties") is False
    assert movement["properties"]["quantity"]["description"] == QUANTITY_RULE
    warehouse = schemas["WarehouseIn"]["properties"]
    assert warehouse["level"]["enum"] == ["prefecture", "county", "township", "village"]
    assert warehouse["status"]["enum"] == ["active", "under_construction", "planned", "closed"]
    assert {"code", "name", "name_zh", "parent", "lon", "lat", "road_node"} <= set(warehouse)
    assert {"name", "name_zh"} <= set(schemas["WarehousePatch"]["properties"])
    item = set(schemas["ItemIn"]["properties"])
    assert {"sku", "name", "name_zh", "unit", "category", "unit_weight_kg", "perishable",
            "per_person", "per_person_day"} <= item
    balance = set(schemas["BalanceFields"]["properties"])
    assert {"warehouse", "item", "on_hand", "reserved", "available", "min", "target"} <= balance
    for path in ("/api/v1/warehouses", "/api/v1/items", "/api/v1/stock", "/api/v1/movements",
                 "/api/v1/transfers"):
        ref = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        page = schemas[ref["$ref"].rsplit("/", 1)[-1]]["properties"]
        assert {"items", "next_cursor"} <= set(page), path
    post = paths["/api/v1/movements"]["post"]
    assert "201" in post["responses"] and "422" in post["responses"]


def test_alembic_has_a_single_head():
    assert len(heads("inventory_svc")) == 1


@pytest.mark.parametrize("db_url", ["sqlite", pytest.param("postgres",
                                                           marks=pytest.mark.postgres)],
                         indirect=True)
def test_the_migrated_schema_is_the_models(inventory_db):
    with inventory_db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []


@pytest.mark.parametrize("db_url", ["sqlite", pytest.param("postgres",
                                                           marks=pytest.mark.postgres)],
                         indirect=True)
def test_the_database_keeps_a_ledger_line_signed_as_its_kind(inv, inventory_db):
    build_tree(inv)
    receive(inv, "KL", "TENT", 5)
    line = ("INSERT INTO movements (warehouse_id, item_id, kind, quantity, balance_after, lot, "
            "actor, at) SELECT warehouse_id, item_id, :kind, :quantity, 5, '', 'test', at "
            "FROM movements LIMIT 1")
    for kind, quantity in (("receipt", -1), ("transfer_in", -1), ("issue", 1),
                           ("transfer_out", 1), ("adjustment", 0), ("theft", -1)):
        with pytest.raises(IntegrityError), inventory_db.engine.begin() as conn:
            conn.execute(text(line), {"kind": kind, "quantity": quantity})
    for kind, quantity in (("receipt", 1), ("issue", -1), ("adjustment", -1), ("adjustment", 1)):
        with inventory_db.engine.begin() as conn:
            conn.execute(text(line), {"kind": kind, "quantity": quantity})
