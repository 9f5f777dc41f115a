"""Events go to the outbox in the same transaction as the change: a change always has its
event, a failed command leaves none."""

from __future__ import annotations

from factories import build_tree, receive
from sqlalchemy import select

from inventory_svc.models import outbox


def events(database, after: int = 0, catalog: bool = False) -> list[tuple[int, str, dict]]:
    """The outbox after `after`: stock and transfer events, or the catalogue's."""
    with database.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.id, outbox.c.type, outbox.c.data, outbox.c.at,
                                   outbox.c.published_at)
                            .where(outbox.c.id > after).order_by(outbox.c.id)).all()
    assert all(row.at is not None and row.published_at is None for row in rows)
    return [(row.id, row.type, row.data) for row in rows
            if (row.type == "catalog.changed") == catalog]


def last_id(database) -> int:
    found = events(database)
    return found[-1][0] if found else 0


def test_stock_changes_and_crossing_min(inv, inventory_db):
    build_tree(inv)
    assert events(inventory_db) == []  # the catalogue is not stock, and what is made is not
    assert events(inventory_db, catalog=True) == []  # a change (it has its own created_at)
    receive(inv, "KL", "TENT", 10)
    [(_, kind, data)] = events(inventory_db)
    assert kind == "stock.changed"
    assert data == {"warehouse": "KL", "item": "TENT", "kind": "receipt", "quantity": 10,
                    "on_hand": 10, "reserved": 0, "available": 10, "actor": "tester"}
    inv.put("/api/v1/warehouses/KL/levels", {"levels": [{"item": "TENT", "min": 6,
                                                         "target": 20}]})
    mark = last_id(inventory_db)
    assert mark == 1  # setting levels is not a stock change, but a change of the catalogue
    [(_, _, levels)] = events(inventory_db, catalog=True)
    assert (levels["entity"], levels["code"], levels["actor"]) == ("levels", "KL", "tester")
    for quantity in (3, 2):  # 10 -> 7 -> 5: crosses min (6) on the second issue only
        inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT", "kind": "issue",
                                       "quantity": quantity})
    kinds = [(kind, data["on_hand"]) for _, kind, data in events(inventory_db, mark)]
    assert kinds == [("stock.changed", 7), ("stock.changed", 5), ("stock.below_min", 5)]
    below = events(inventory_db, mark)[-1][2]
    assert (below["min"], below["target"], below["warehouse"], below["item"]) == (
        6, 20, "KL", "TENT")
    mark = last_id(inventory_db)
    inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT", "kind": "issue",
                                   "quantity": 1})  # still below: no second alarm
    receive(inv, "KL", "TENT", 10)  # back above
    inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT", "kind": "adjustment",
                                   "quantity": -9, "reason": "water damage"})  # 14 -> 5
    assert [kind for _, kind, _ in events(inventory_db, mark)] == [
        "stock.changed", "stock.changed", "stock.changed", "stock.below_min"]


def test_transfers_record_created_and_received(inv, inventory_db):
    build_tree(inv)
    receive(inv, "KL", "QUILT", 10)
    mark = last_id(inventory_db)
    sent = inv.post("/api/v1/transfers", {"source": "KL", "destination": "LP", "lines": [
        {"item": "QUILT", "quantity": 6}]}).get_json()
    created = events(inventory_db, mark)
    assert [kind for _, kind, _ in created] == ["stock.changed", "transfer.created"]
    assert created[-1][2] == {"id": sent["id"], "source": "KL", "destination": "LP",
                              "status": "in_transit", "actor": "tester",
                              "lines": [{"item": "QUILT", "quantity": 6, "received": None}]}
    mark = last_id(inventory_db)
    inv.post(f"/api/v1/transfers/{sent['id']}/receive", {"lines": [
        {"item": "QUILT", "received": 5, "reason": "one lost"}]})
    received = events(inventory_db, mark)
    assert [kind for _, kind, _ in received] == ["stock.changed", "transfer.received"]
    assert received[0][2]["warehouse"] == "LP" and received[0][2]["quantity"] == 5
    assert received[-1][2]["status"] == "received"
    assert received[-1][2]["lines"] == [{"item": "QUILT", "quantity": 6, "received": 5}]


def test_failed_commands_leave_no_event(inv, inventory_db):
    build_tree(inv)
    receive(inv, "KL", "QUILT", 10)
    receive(inv, "KL", "TENT", 1)
    mark = last_id(inventory_db)
    failures = [
        ("/api/v1/movements", {"warehouse": "KL", "item": "QUILT", "kind": "issue",
                               "quantity": 11}),
        ("/api/v1/movements/batch", {"lines": [  # the first line alone would succeed
            {"warehouse": "KL", "item": "QUILT", "kind": "issue", "quantity": 1},
            {"warehouse": "KL", "item": "TENT", "kind": "issue", "quantity": 2}]}),
        ("/api/v1/transfers", {"source": "KL", "destination": "LP", "lines": [
            {"item": "QUILT", "quantity": 4}, {"item": "TENT", "quantity": 2}]}),
        ("/api/v1/stocktakes", {"warehouse": "KL", "counts": [
            {"item": "QUILT", "counted": 2}, {"item": "WATER", "counted": 3}]}),
        ("/api/v1/reservations", {"lines": [{"warehouse": "KL", "item": "QUILT",
                                             "quantity": 11}]}),
    ]
    for path, body in failures:
        response = inv.post(path, body)
        assert 400 <= response.status_code < 500, (path, response.get_json())
    sent = inv.post("/api/v1/transfers", {"source": "KL", "destination": "LP", "lines": [
        {"item": "QUILT", "quantity": 4}]}).get_json()
    mark_after_transfer = last_id(inventory_db)
    short_without_reason = inv.post(f"/api/v1/transfers/{sent['id']}/receive", {"lines": [
        {"item": "QUILT", "received": 1}]})
    assert short_without_reason.status_code == 422
    assert events(inventory_db, mark_after_transfer) == []
    assert [kind for _, kind, _ in events(inventory_db, mark)] == [
        "stock.changed", "transfer.created"]
