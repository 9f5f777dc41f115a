"""Reservations: all-or-none holds with a time to live; a 409 lists every shortfall; commit
issues the stock, release frees it, and an expired hold frees itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from factories import build_tree, receive
from sqlalchemy import text

from inventory_svc.expiry import expire_due


def stock(inv, warehouse: str, item: str) -> tuple[int, int, int]:
    rows = inv.get(f"/api/v1/stock?warehouse={warehouse}&item={item}").get_json()["items"]
    row = rows[0] if rows else {"on_hand": 0, "reserved": 0, "available": 0}
    return row["on_hand"], row["reserved"], row["available"]


def hold(caller, *lines, **extra):
    return caller.post("/api/v1/reservations", {"lines": [
        {"warehouse": w, "item": i, "quantity": q} for w, i, q in lines], **extra})


def test_hold_commit_release(inv):
    build_tree(inv)
    receive(inv, "KL", "TENT", 20)
    receive(inv, "KL", "WATER", 6, lot="late", expires_on="2027-08-01")
    receive(inv, "KL", "WATER", 6, lot="soon", expires_on="2027-01-01")
    receive(inv, "LP", "QUILT", 10)
    planner = inv.as_("service", actor="allocation")
    made = hold(planner, ("KL", "TENT", 5), ("KL", "WATER", 8), ("LP", "QUILT", 4),
                ("KL", "TENT", 2), reference="plan-1")
    assert made.status_code == 201, made.get_json()
    held = made.get_json()
    assert held["status"] == "held" and held["reference"] == "plan-1"
    assert held["created_by"] == "allocation" and held["closed_at"] is None
    assert sorted((ln["warehouse"], ln["item"], ln["quantity"]) for ln in held["lines"]) == [
        ("KL", "TENT", 7), ("KL", "WATER", 8), ("LP", "QUILT", 4)]
    expires = datetime.fromisoformat(held["expires_at"])
    created = datetime.fromisoformat(held["created_at"])
    assert expires - created == timedelta(seconds=900)  # the configured default
    assert stock(inv, "KL", "TENT") == (20, 7, 13)
    assert stock(inv, "KL", "WATER") == (12, 8, 4)
    issue = inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT", "kind": "issue",
                                           "quantity": 14})
    assert issue.status_code == 409 and issue.get_json()["available"] == 13
    committed = planner.post(f"/api/v1/reservations/{held['id']}/commit")
    assert committed.status_code == 200, committed.get_json()
    assert committed.get_json()["status"] == "committed"
    assert committed.get_json()["closed_at"] is not None
    assert stock(inv, "KL", "TENT") == (13, 0, 13)
    assert stock(inv, "KL", "WATER") == (4, 0, 4)
    assert stock(inv, "LP", "QUILT") == (6, 0, 6)
    water = inv.get("/api/v1/movements?warehouse=KL&item=WATER").get_json()["items"][-2:]
    assert [(m["kind"], m["lot"], m["quantity"], m["reference"]) for m in water] == [
        ("issue", "soon", -6, "plan-1"), ("issue", "late", -2, "plan-1")]
    assert planner.post(f"/api/v1/reservations/{held['id']}/commit").status_code == 409
    assert planner.post(f"/api/v1/reservations/{held['id']}/release").status_code == 409

    second = hold(inv.as_("integration"), ("KL", "TENT", 10), ttl_seconds=60).get_json()
    assert datetime.fromisoformat(second["expires_at"]) - datetime.fromisoformat(
        second["created_at"]) == timedelta(seconds=60)
    assert stock(inv, "KL", "TENT") == (13, 10, 3)
    released = planner.post(f"/api/v1/reservations/{second['id']}/release")
    assert released.status_code == 200 and released.get_json()["status"] == "released"
    assert stock(inv, "KL", "TENT") == (13, 0, 13)
    again = planner.post(f"/api/v1/reservations/{second['id']}/release")
    assert again.status_code == 200 and again.get_json()["status"] == "released"
    assert stock(inv, "KL", "TENT") == (13, 0, 13)  # released once only
    assert planner.post(f"/api/v1/reservations/{second['id']}/commit").status_code == 409
    shown = inv.as_("viewer").get(f"/api/v1/reservations/{second['id']}")
    assert shown.status_code == 200 and shown.get_json()["status"] == "released"
    assert released.get_json() == again.get_json() == shown.get_json()  # answered as read back


def test_a_shortfall_lists_every_short_line_and_holds_nothing(inv):
    build_tree(inv)
    receive(inv, "KL", "TENT", 5)
    receive(inv, "LP", "TENT", 8)
    receive(inv, "KL", "QUILT", 3)
    response = hold(inv, ("KL", "TENT", 4), ("LP", "TENT", 9), ("KL", "QUILT", 10),
                    ("KL-T01", "TENT", 1), ("KL", "TENT", 2))
    assert response.status_code == 409
    body = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert sorted(body["shortfalls"], key=lambda s: (s["warehouse"], s["item"])) == [
        {"warehouse": "KL", "item": "QUILT", "requested": 10, "available": 3, "short": 7},
        {"warehouse": "KL", "item": "TENT", "requested": 6, "available": 5, "short": 1},
        {"warehouse": "KL-T01", "item": "TENT", "requested": 1, "available": 0, "short": 1},
        {"warehouse": "LP", "item": "TENT", "requested": 9, "available": 8, "short": 1}]
    assert "4 line(s)" in body["detail"]
    for warehouse, item in (("KL", "TENT"), ("LP", "TENT"), ("KL", "QUILT")):
        assert stock(inv, warehouse, item)[1] == 0  # nothing held
    never = inv.get("/api/v1/stock?warehouse=KL-T01&item=TENT").get_json()["items"]
    assert never == []  # a hold where nothing ever was makes no empty balance
    assert hold(inv, ("KL", "TENT", 5), ("LP", "TENT", 8), ("KL", "QUILT", 3)).status_code == 201
    assert hold(inv, ("KL", "TENT", 1)).get_json()["shortfalls"] == [
        {"warehouse": "KL", "item": "TENT", "requested": 1, "available": 0, "short": 1}]


def test_an_expired_hold_frees_itself(inv, inventory_db):
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    first = hold(inv, ("KL", "TENT", 6), ttl_seconds=30).get_json()
    second = hold(inv, ("KL", "TENT", 4), ttl_seconds=3600).get_json()
    assert stock(inv, "KL", "TENT") == (10, 10, 0)
    with inventory_db.unit_of_work() as session:  # nothing is due yet
        assert expire_due(session) == 0
    with inventory_db.unit_of_work() as session:  # 31 seconds later, the first is due
        later = datetime.now(UTC) + timedelta(seconds=31)
        assert expire_due(session, now=later) == 1
    assert stock(inv, "KL", "TENT") == (10, 4, 6)
    shown = inv.get(f"/api/v1/reservations/{first['id']}").get_json()
    assert shown["status"] == "expired" and shown["closed_at"] is not None
    assert inv.post(f"/api/v1/reservations/{first['id']}/commit").status_code == 409
    assert inv.post(f"/api/v1/reservations/{first['id']}/release").get_json()["status"] == \
        "expired"
    assert stock(inv, "KL", "TENT") == (10, 4, 6)

    # The second hold's time runs out with nobody reading: an issue still finds the stock free.
    with inventory_db.engine.begin() as conn:
        conn.execute(text("UPDATE reservations SET expires_at = :past WHERE id = :id"),
                     {"past": datetime.now(UTC) - timedelta(seconds=1), "id": second["id"]})
    issue = inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT", "kind": "issue",
                                           "quantity": 10})
    assert issue.status_code == 201, issue.get_json()
    assert (issue.get_json()["on_hand"], issue.get_json()["reserved"]) == (0, 0)
    assert inv.get(f"/api/v1/reservations/{second['id']}").get_json()["status"] == "expired"
    assert inv.post(f"/api/v1/reservations/{second['id']}/commit").status_code == 409


def test_committing_an_overdue_hold_is_refused(inv, inventory_db):
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    made = hold(inv, ("KL", "TENT", 6)).get_json()
    with inventory_db.engine.begin() as conn:
        conn.execute(text("UPDATE reservations SET expires_at = :past WHERE id = :id"),
                     {"past": datetime.now(UTC) - timedelta(seconds=1), "id": made["id"]})
    refused = inv.post(f"/api/v1/reservations/{made['id']}/commit")
    assert refused.status_code == 409
    assert refused.get_json()["reservation_status"] == "expired"
    assert stock(inv, "KL", "TENT") == (10, 0, 10)
    assert inv.get(f"/api/v1/reservations/{made['id']}").get_json()["status"] == "expired"
