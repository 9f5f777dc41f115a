"""Expired stock is not relief (issue 11, item 2): lots past their date are not available, not
held, not issued or sent; a write-off takes them off the shelf; keepers list a balance's lots
and what expires soon. Dates are relative to the prefecture's today, so the tests do not rot."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from factories import build_tree, receive

from inventory_svc import shelf

TODAY = shelf.today()


def day(offset: int) -> str:
    return (TODAY + timedelta(days=offset)).isoformat()


def balance(inv, warehouse: str = "KL", item: str = "WATER") -> dict:
    rows = inv.get(f"/api/v1/stock?warehouse={warehouse}&item={item}").get_json()["items"]
    return rows[0]


def ledger_sum(inv, warehouse: str = "KL", item: str = "WATER") -> int:
    card = inv.get(f"/api/v1/movements?warehouse={warehouse}&item={item}&limit=1000")
    return sum(line["quantity"] for line in card.get_json()["items"])


def issue(inv, quantity: int, **extra):
    return inv.post("/api/v1/movements", {"warehouse": "KL", "item": "WATER", "kind": "issue",
                                          "quantity": quantity, **extra})


@pytest.fixture
def shelf_of_water(inv):
    """KL: 10 bottles expired ten days ago, 4 expired yesterday, 6 good for 100 days."""
    build_tree(inv)
    receive(inv, "KL", "WATER", 10, lot="OLD", expires_on=day(-10))
    receive(inv, "KL", "WATER", 4, lot="LAST", expires_on=day(-1))
    receive(inv, "KL", "WATER", 6, lot="NEW", expires_on=day(100))
    return inv


def test_the_prefectures_today_is_asia_shanghai():
    assert shelf.today(datetime(2026, 12, 2, 15, 59, tzinfo=UTC)) == date(2026, 12, 2)
    assert shelf.today(datetime(2026, 12, 2, 16, 0, tzinfo=UTC)) == date(2026, 12, 3)


def test_expired_lots_are_on_hand_but_not_available(shelf_of_water):
    inv = shelf_of_water
    row = balance(inv)
    assert (row["on_hand"], row["reserved"], row["available"]) == (20, 0, 6)
    [summary] = inv.get("/api/v1/stock/summary?item=WATER").get_json()["rows"]
    assert (summary["on_hand"], summary["available"]) == (20, 6)
    snap = inv.get("/api/v1/stock/snapshot?item=WATER").get_json()["stock"]
    assert (snap["on_hand"], snap["available"], snap["expired"]) == ([20], [6], [14])


def test_a_lot_is_good_through_its_expiry_date(inv):
    build_tree(inv)
    receive(inv, "KL", "WATER", 2, expires_on=day(-1))
    receive(inv, "KL", "WATER", 3, expires_on=day(0))
    assert balance(inv)["available"] == 3
    issued = issue(inv, 3)
    assert issued.status_code == 201, issued.get_json()
    assert [ln["expires_on"] for ln in issued.get_json()["lines"]] == [day(0)]


def test_issues_skip_expired_lots_and_refuse_what_only_they_could_give(shelf_of_water):
    inv = shelf_of_water
    too_much = issue(inv, 7)
    assert too_much.status_code == 409
    problem = too_much.get_json()
    assert (problem["available"], problem["expired"], problem["requested"]) == (6, 14, 7)
    assert "14" in problem["detail"] and "past their expiry date" in problem["detail"]
    zh = inv.post("/api/v1/movements", {"warehouse": "KL", "item": "WATER", "kind": "issue",
                                        "quantity": 7}, headers={"Accept-Language": "zh"})
    assert "过期" in zh.get_json()["detail"]
    done = issue(inv, 6)
    assert done.status_code == 201, done.get_json()
    assert [(ln["lot"], ln["quantity"]) for ln in done.get_json()["lines"]] == [("NEW", -6)]
    only_expired = issue(inv, 1)
    assert only_expired.status_code == 409
    assert (only_expired.get_json()["available"], only_expired.get_json()["expired"]) == (0, 14)
    named = issue(inv, 1, lot="OLD")  # naming an expired lot does not get it out either
    assert named.status_code == 409 and named.get_json()["available"] == 0
    assert balance(inv)["on_hand"] == ledger_sum(inv) == 14


def test_transfers_send_only_stock_within_its_date(shelf_of_water):
    inv = shelf_of_water
    sent = inv.post("/api/v1/transfers", {"source": "KL", "destination": "KL-T01",
                                          "lines": [{"item": "WATER", "quantity": 5}]})
    assert sent.status_code == 201, sent.get_json()
    assert [lot["lot"] for lot in sent.get_json()["lines"][0]["lots"]] == ["NEW"]
    refused = inv.post("/api/v1/transfers", {"source": "KL", "destination": "KL-T01",
                                             "lines": [{"item": "WATER", "quantity": 2}]})
    assert refused.status_code == 409 and refused.get_json()["expired"] == 14


def test_holds_leave_expired_stock_out(shelf_of_water):
    inv = shelf_of_water
    planner = inv.as_("service", actor="allocation")
    short = planner.post("/api/v1/reservations", {"lines": [
        {"warehouse": "KL", "item": "WATER", "quantity": 7}]})
    assert short.status_code == 409
    [line] = short.get_json()["shortfalls"]
    assert (line["available"], line["short"], line["expired"]) == (6, 1, 14)
    held = planner.post("/api/v1/reservations", {"lines": [
        {"warehouse": "KL", "item": "WATER", "quantity": 6}]})
    assert held.status_code == 201, held.get_json()
    assert balance(inv)["available"] == 0
    committed = planner.post(f"/api/v1/reservations/{held.get_json()['id']}/commit")
    assert committed.status_code == 200, committed.get_json()
    assert (balance(inv)["on_hand"], ledger_sum(inv)) == (14, 14)


def test_a_hold_whose_stock_expires_is_not_committed_and_blocks_its_write_off(inv,
                                                                               monkeypatch):
    build_tree(inv)
    receive(inv, "KL", "WATER", 5, lot="SOON", expires_on=day(2))
    planner = inv.as_("service", actor="allocation")
    held = planner.post("/api/v1/reservations", {"lines": [
        {"warehouse": "KL", "item": "WATER", "quantity": 5}], "ttl_seconds": 86400})
    assert held.status_code == 201, held.get_json()
    monkeypatch.setattr(shelf, "today", lambda now=None: TODAY + timedelta(days=5))
    committed = planner.post(f"/api/v1/reservations/{held.get_json()['id']}/commit")
    assert committed.status_code == 409
    assert committed.get_json()["expired"] == 5
    blocked = inv.post("/api/v1/stock/write-offs", {"warehouse": "KL", "item": "WATER"})
    assert blocked.status_code == 409
    assert (blocked.get_json()["reserved"], blocked.get_json()["expired"]) == (5, 5)
    released = planner.post(f"/api/v1/reservations/{held.get_json()['id']}/release")
    assert released.status_code == 200, released.get_json()
    written = inv.post("/api/v1/stock/write-offs", {"warehouse": "KL", "item": "WATER"})
    assert written.status_code == 201, written.get_json()
    assert (written.get_json()["on_hand"], ledger_sum(inv)) == (0, 0)


def test_a_write_off_removes_each_expired_lot_with_a_reason(shelf_of_water):
    inv = shelf_of_water
    keeper = inv.as_("keeper", "KL", actor="kl-keeper")
    key = {"Idempotency-Key": "write-off-1"}
    body = {"warehouse": "KL", "item": "WATER", "reference": "ROT-12"}
    written = keeper.post("/api/v1/stock/write-offs", body, headers=key)
    assert written.status_code == 201, written.get_json()
    answer = written.get_json()
    assert (answer["kind"], answer["quantity"], answer["on_hand"], answer["available"]) == (
        "adjustment", -14, 6, 6)
    assert [(ln["lot"], ln["expires_on"], ln["quantity"], ln["reason"], ln["reference"],
             ln["actor"]) for ln in answer["lines"]] == [
        ("OLD", day(-10), -10, "expired", "ROT-12", "kl-keeper"),
        ("LAST", day(-1), -4, "expired", "ROT-12", "kl-keeper")]
    again = keeper.post("/api/v1/stock/write-offs", body, headers=key)
    assert again.status_code == 201 and again.get_json() == answer
    nothing = keeper.post("/api/v1/stock/write-offs", body)
    assert nothing.status_code == 201
    assert (nothing.get_json()["quantity"], nothing.get_json()["lines"]) == (0, [])
    assert balance(inv)["on_hand"] == ledger_sum(inv) == 6
    lots = inv.get("/api/v1/stock/lots?warehouse=KL&item=WATER").get_json()["items"]
    assert [(lot["lot"], lot["on_hand"]) for lot in lots] == [("NEW", 6)]


def test_a_write_off_of_one_lot_and_who_may_write_off(shelf_of_water):
    inv = shelf_of_water
    one = inv.post("/api/v1/stock/write-offs", {"warehouse": "KL", "item": "WATER",
                                                "lot": "LAST"})
    assert one.status_code == 201, one.get_json()
    assert [(ln["lot"], ln["quantity"]) for ln in one.get_json()["lines"]] == [("LAST", -4)]
    fresh = inv.post("/api/v1/stock/write-offs", {"warehouse": "KL", "item": "WATER",
                                                  "lot": "NEW"})
    assert fresh.get_json()["lines"] == []  # within its date: not written off
    outside = inv.as_("keeper", "KL-T01").post("/api/v1/stock/write-offs",
                                               {"warehouse": "KL", "item": "WATER"})
    assert outside.status_code == 403
    viewer = inv.as_("viewer").post("/api/v1/stock/write-offs",
                                    {"warehouse": "KL", "item": "WATER"})
    assert viewer.status_code == 403
    unknown = inv.post("/api/v1/stock/write-offs", {"warehouse": "KL", "item": "NOPE"})
    assert unknown.status_code == 422
    assert balance(inv)["on_hand"] == ledger_sum(inv) == 16


def test_a_balances_lots(shelf_of_water):
    inv = shelf_of_water
    response = inv.get("/api/v1/stock/lots?warehouse=KL&item=WATER")
    assert response.status_code == 200, response.get_json()
    assert [(lot["lot"], lot["expires_on"], lot["on_hand"], lot["expired"], lot["days_left"])
            for lot in response.get_json()["items"]] == [
        ("OLD", day(-10), 10, True, -10), ("LAST", day(-1), 4, True, -1),
        ("NEW", day(100), 6, False, 100)]
    first = inv.get("/api/v1/stock/lots?warehouse=KL&item=WATER&limit=2").get_json()
    rest = inv.get("/api/v1/stock/lots?warehouse=KL&item=WATER&limit=2&cursor="
                   + first["next_cursor"]).get_json()
    assert [lot["lot"] for lot in first["items"] + rest["items"]] == ["OLD", "LAST", "NEW"]
    assert inv.as_("keeper", "KL").get("/api/v1/stock/lots?warehouse=KL&item=WATER"
                                       ).status_code == 200
    assert inv.as_("keeper", "LP").get("/api/v1/stock/lots?warehouse=KL&item=WATER"
                                       ).status_code == 403
    assert inv.get("/api/v1/stock/lots?warehouse=KL").status_code == 422


def test_what_expires_soon_for_a_keeper_to_rotate(shelf_of_water):
    inv = shelf_of_water
    receive(inv, "KL-T01", "WATER", 3, lot="T1-SOON", expires_on=day(20))
    receive(inv, "LP", "WATER", 2, lot="LP-SOON", expires_on=day(5))
    receive(inv, "LP", "WATER", 2, lot="LP-LATE", expires_on=day(60))

    def soon(caller, query):
        response = caller.get("/api/v1/stock/expiring?" + query)
        assert response.status_code == 200, response.get_json()
        return [(lot["warehouse"], lot["lot"], lot["expired"])
                for lot in response.get_json()["items"]]

    assert soon(inv, "within_days=30") == [
        ("KL", "OLD", True), ("KL", "LAST", True), ("KL-T01", "T1-SOON", False),
        ("LP", "LP-SOON", False)]
    assert soon(inv, "within_days=0") == [("KL", "OLD", True), ("KL", "LAST", True)]
    assert soon(inv, "within_days=30&warehouse=KL") == [
        ("KL", "OLD", True), ("KL", "LAST", True), ("KL-T01", "T1-SOON", False)]
    keeper = inv.as_("keeper", "KL-T01")
    assert soon(keeper, "within_days=30") == [("KL-T01", "T1-SOON", False)]
    assert keeper.get("/api/v1/stock/expiring?within_days=30&warehouse=LP").status_code == 403
    page = inv.get("/api/v1/stock/expiring?within_days=30&limit=3").get_json()
    following = inv.get("/api/v1/stock/expiring?within_days=30&limit=3&cursor="
                        + page["next_cursor"]).get_json()
    assert len(page["items"]) == 3 and [lot["lot"] for lot in following["items"]] == ["LP-SOON"]
    assert inv.get("/api/v1/stock/expiring").status_code == 422
