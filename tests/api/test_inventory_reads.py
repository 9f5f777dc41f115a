"""Reads do not write: a hold past its time reads as freed (stock, summary, snapshot) and as
expired (the reservation) while its row is still held; the background worker's `expire_holds`
frees it for good; on PostgreSQL a read session refuses to write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from factories import build_tree, receive
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError

from inventory_svc.expiry import expire_holds
from inventory_svc.models import Item, Reservation, Stock, Warehouse, outbox
from shared.db import Database


def hold(caller, warehouse: str, item: str, quantity: int) -> dict:
    response = caller.post("/api/v1/reservations", {"lines": [
        {"warehouse": warehouse, "item": item, "quantity": quantity}], "ttl_seconds": 3600})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def overdue(database, reservation_id: int) -> None:
    """Move a hold's end into the past, as time passing would."""
    with database.engine.begin() as conn:
        conn.execute(text("UPDATE reservations SET expires_at = :past WHERE id = :id"),
                     {"past": datetime.now(UTC) - timedelta(seconds=1), "id": reservation_id})


def stored(database) -> dict:
    """What the tables hold: each reservation's status and closing time, each balance's
    reserved, and the outbox's last event id."""
    with database.engine.connect() as conn:
        return {
            "holds": dict((row.id, (row.status, row.closed_at)) for row in conn.execute(
                select(Reservation.id, Reservation.status, Reservation.closed_at))),
            "reserved": dict(conn.execute(
                select(Warehouse.code + "/" + Item.sku, Stock.reserved)
                .join(Warehouse, Warehouse.id == Stock.warehouse_id)
                .join(Item, Item.id == Stock.item_id)).all()),
            "last_event": conn.scalar(select(outbox.c.id).order_by(outbox.c.id.desc())
                                      .limit(1)),
        }


def test_a_read_counts_an_overdue_hold_as_freed_and_writes_nothing(inv, inventory_db):
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    receive(inv, "LP", "TENT", 5)
    dead = hold(inv, "KL", "TENT", 6)
    live = hold(inv, "KL", "TENT", 3)
    hold(inv, "LP", "TENT", 2)
    overdue(inventory_db, dead["id"])
    before = stored(inventory_db)
    assert before["reserved"] == {"KL/TENT": 9, "LP/TENT": 2}

    [row] = inv.get("/api/v1/stock?warehouse=KL&item=TENT").get_json()["items"]
    assert (row["on_hand"], row["reserved"], row["available"]) == (10, 3, 7)
    rows = {r["warehouse"]: r for r in inv.get("/api/v1/stock?item=TENT").get_json()["items"]}
    assert (rows["KL"]["reserved"], rows["LP"]["reserved"]) == (3, 2)
    summary = inv.get("/api/v1/stock/summary?item=TENT&by=level").get_json()["rows"]
    assert [(r["group"], r["on_hand"], r["reserved"], r["available"]) for r in summary] == [
        ("county", 15, 5, 10)]
    snapshot = inv.get("/api/v1/stock/snapshot?item=TENT").get_json()
    codes = snapshot["warehouses"]["code"]
    available = {codes[w]: a for w, a in zip(snapshot["stock"]["warehouse"],
                                             snapshot["stock"]["available"], strict=True)}
    assert available == {"KL": 7, "LP": 3}
    shown = inv.get(f"/api/v1/reservations/{dead['id']}").get_json()
    assert shown["status"] == "expired"
    assert shown["closed_at"] == shown["expires_at"]  # closed when its time ran out
    assert inv.get(f"/api/v1/reservations/{live['id']}").get_json()["status"] == "held"

    after = stored(inventory_db)
    assert after == before  # still held in the table, nothing freed, no event
    assert after["holds"][dead["id"]] == ("held", None)


def test_expire_holds_frees_what_is_due_and_emits_what_release_emits(inv, inventory_db):
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    released, dead, live = (hold(inv, "KL", "TENT", q) for q in (1, 4, 2))
    assert expire_holds(inventory_db) == 0  # nothing is due yet
    mark = stored(inventory_db)["last_event"]
    freed = inv.post(f"/api/v1/reservations/{released['id']}/release")
    assert freed.status_code == 200, freed.get_json()
    after_release = stored(inventory_db)
    overdue(inventory_db, dead["id"])

    assert expire_holds(inventory_db) == 1
    after_expiry = stored(inventory_db)
    assert after_release["last_event"] == mark  # a release records no event ...
    assert after_expiry["last_event"] == after_release["last_event"]  # ... nor does expiry
    assert after_release["reserved"] == {"KL/TENT": 6}
    assert after_expiry["reserved"] == {"KL/TENT": 2}  # what the read already answered
    status, closed_at = after_expiry["holds"][dead["id"]]
    assert status == "expired" and closed_at is not None
    assert after_expiry["holds"][live["id"]] == ("held", None)
    shown = inv.get(f"/api/v1/reservations/{dead['id']}").get_json()
    assert (shown["status"], shown["closed_at"]) == ("expired", shown["expires_at"])
    assert expire_holds(inventory_db) == 0  # freed once only
    assert inv.post(f"/api/v1/reservations/{dead['id']}/commit").status_code == 409


def test_a_write_to_an_overdue_hold_settles_it_first(inv, inventory_db):
    """Release answers what a read shows: an overdue hold is expired, its stock freed once."""
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    dead = hold(inv, "KL", "TENT", 4)
    overdue(inventory_db, dead["id"])
    answer = inv.post(f"/api/v1/reservations/{dead['id']}/release")
    assert answer.status_code == 200 and answer.get_json()["status"] == "expired"
    assert answer.get_json() == inv.get(f"/api/v1/reservations/{dead['id']}").get_json()
    assert stored(inventory_db)["reserved"] == {"KL/TENT": 0}
    assert expire_holds(inventory_db) == 0


def test_a_write_inside_a_read_session_is_refused_on_postgres(inventory_db):
    # One connection only, so that the write after the refused one takes the same connection.
    database = Database(inventory_db.url, **({"pool_size": 1, "max_overflow": 0}
                                             if inventory_db.is_postgres else {}))
    with database.unit_of_work() as session:
        session.add(Item(sku="ROPE", name="Rope", unit="m", category="general"))
    renamed = update(Item).where(Item.sku == "ROPE").values(name="Cord")
    if database.is_postgres:
        with pytest.raises(DBAPIError, match="read-only transaction"), \
                database.reading() as session:
            session.execute(renamed)
    else:  # SQLite: the write is simply never committed
        with database.reading() as session:
            session.execute(renamed)
    with database.reading() as session:
        assert session.scalar(select(Item.name).where(Item.sku == "ROPE")) == "Rope"
    with database.unit_of_work() as session:  # the connection went back to the pool writable
        session.execute(renamed)
    with database.reading() as session:
        assert session.scalar(select(Item.name).where(Item.sku == "ROPE")) == "Cord"
    database.dispose()
