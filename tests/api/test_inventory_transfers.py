"""Transfers (stock leaves at once, is in transit, arrives when the destination's keeper
receives it; a short receipt records the difference with a reason) and stocktakes."""

from __future__ import annotations

from factories import build_tree, receive


def stock(inv, warehouse: str, item: str) -> dict:
    rows = inv.get(f"/api/v1/stock?warehouse={warehouse}&item={item}").get_json()["items"]
    return rows[0] if rows else {"on_hand": 0, "reserved": 0}


def test_a_transfer_leaves_at_once_and_arrives_when_received(inv):
    build_tree(inv)
    receive(inv, "KL-T02", "TENT", 30)
    receive(inv, "KL-T02", "WATER", 10, lot="W-late", expires_on="2027-09-01")
    receive(inv, "KL-T02", "WATER", 10, lot="W-early", expires_on="2027-02-01")
    source = inv.as_("keeper", "KL-T02", actor="t02")
    destination = inv.as_("keeper", "KL-T01", actor="t01")
    sent = source.post("/api/v1/transfers", {
        "source": "KL-T02", "destination": "KL-T01", "reference": "RQ-9", "reason": "flood",
        "lines": [{"item": "TENT", "quantity": 12}, {"item": "WATER", "quantity": 14},
                  {"item": "TENT", "quantity": 3}]})
    assert sent.status_code == 201, sent.get_json()
    transfer = sent.get_json()
    assert transfer["status"] == "in_transit" and transfer["created_by"] == "t02"
    assert transfer["source"] == "KL-T02" and transfer["destination"] == "KL-T01"
    assert [(ln["item"], ln["quantity"], ln["received"]) for ln in transfer["lines"]] == [
        ("TENT", 15, None), ("WATER", 14, None)]
    assert transfer["lines"][1]["lots"] == [
        {"lot": "W-early", "expires_on": "2027-02-01", "quantity": 10},
        {"lot": "W-late", "expires_on": "2027-09-01", "quantity": 4}]
    assert stock(inv, "KL-T02", "TENT")["on_hand"] == 15  # left at once
    assert stock(inv, "KL-T01", "TENT")["on_hand"] == 0  # in transit
    out = inv.get("/api/v1/movements?warehouse=KL-T02&item=TENT").get_json()["items"][-1]
    assert (out["kind"], out["quantity"], out["reference"]) == (
        "transfer_out", -15, f"transfer:{transfer['id']}")
    listed = inv.get("/api/v1/transfers?warehouse=KL-T01&status=in_transit").get_json()
    assert [t["id"] for t in listed["items"]] == [transfer["id"]]
    assert inv.get("/api/v1/transfers?status=received").get_json()["items"] == []
    path = f"/api/v1/transfers/{transfer['id']}/receive"
    assert source.post(path, {}).status_code == 403  # only the destination's keeper
    assert inv.as_("keeper", "KL-T01-V01").post(path, {}).status_code == 403
    assert inv.as_("commander").post(path, {}).status_code == 403
    got = destination.post(path, {})
    assert got.status_code == 200, got.get_json()
    received = got.get_json()
    assert received["status"] == "received" and received["received_by"] == "t01"
    assert [(ln["item"], ln["received"], ln["shortfall_reason"]) for ln in received["lines"]
            ] == [("TENT", 15, None), ("WATER", 14, None)]
    assert stock(inv, "KL-T01", "TENT")["on_hand"] == 15
    water_in = inv.get("/api/v1/movements?warehouse=KL-T01&item=WATER").get_json()["items"]
    assert [(m["kind"], m["lot"], m["expires_on"], m["quantity"]) for m in water_in] == [
        ("transfer_in", "W-early", "2027-02-01", 10), ("transfer_in", "W-late", "2027-09-01", 4)]
    again = destination.post(path, {})
    assert again.status_code == 409
    assert stock(inv, "KL-T01", "TENT")["on_hand"] == 15
    assert inv.get(f"/api/v1/transfers/{transfer['id']}").get_json() == received


def test_a_short_receipt_needs_a_reason_and_records_the_difference(inv):
    build_tree(inv)
    receive(inv, "QDN", "QUILT", 100)
    receive(inv, "QDN", "TENT", 10)
    sent = inv.post("/api/v1/transfers", {"source": "QDN", "destination": "LP", "lines": [
        {"item": "QUILT", "quantity": 60}, {"item": "TENT", "quantity": 10}]}).get_json()
    path = f"/api/v1/transfers/{sent['id']}/receive"
    keeper = inv.as_("keeper", "LP")
    no_reason = keeper.post(path, {"lines": [{"item": "QUILT", "received": 55}]})
    assert no_reason.status_code == 422 and stock(inv, "LP", "QUILT")["on_hand"] == 0
    short = keeper.post(path, {"lines": [
        {"item": "QUILT", "received": 55, "reason": "5 soaked in the river crossing"},
        {"item": "TENT", "received": 0, "reason": "truck 2 turned back"}]})
    assert short.status_code == 200, short.get_json()
    lines = {ln["item"]: ln for ln in short.get_json()["lines"]}
    assert (lines["QUILT"]["quantity"], lines["QUILT"]["received"]) == (60, 55)
    assert lines["QUILT"]["shortfall_reason"] == "5 soaked in the river crossing"
    assert (lines["TENT"]["received"], lines["TENT"]["shortfall_reason"]) == (
        0, "truck 2 turned back")
    assert stock(inv, "LP", "QUILT")["on_hand"] == 55
    assert stock(inv, "LP", "TENT")["on_hand"] == 0
    arrived = inv.get("/api/v1/movements?warehouse=LP&item=QUILT").get_json()["items"]
    assert [(m["quantity"], m["reason"]) for m in arrived] == [
        (55, "5 soaked in the river crossing")]
    assert stock(inv, "QDN", "QUILT")["on_hand"] == 40  # the 5 are lost, not returned


def test_transfer_rules(inv):
    build_tree(inv)
    receive(inv, "KL", "TENT", 5)
    assert inv.as_("keeper", "KL-T01").post("/api/v1/transfers", {
        "source": "KL", "destination": "KL-T01",
        "lines": [{"item": "TENT", "quantity": 1}]}).status_code == 403  # not the source's
    assert inv.as_("commander").post("/api/v1/transfers", {
        "source": "KL", "destination": "LP",
        "lines": [{"item": "TENT", "quantity": 1}]}).status_code == 201
    inv.patch("/api/v1/warehouses/LP", {"status": "closed"})
    closed = inv.post("/api/v1/transfers", {"source": "KL", "destination": "LP",
                                            "lines": [{"item": "TENT", "quantity": 1}]})
    assert closed.status_code == 409
    over = inv.post("/api/v1/transfers", {"source": "KL", "destination": "KL-T02",
                                          "lines": [{"item": "TENT", "quantity": 5}]})
    assert over.status_code == 409 and over.get_json()["available"] == 4
    hold = inv.post("/api/v1/reservations", {"lines": [{"warehouse": "KL", "item": "TENT",
                                                        "quantity": 3}]})
    assert hold.status_code == 201
    held = inv.post("/api/v1/transfers", {"source": "KL", "destination": "KL-T02",
                                          "lines": [{"item": "TENT", "quantity": 2}]})
    assert held.status_code == 409  # what is held for a plan does not travel
    assert stock(inv, "KL", "TENT") == {"warehouse": "KL", "item": "TENT", "on_hand": 4,
                                        "reserved": 3, "available": 1, "min": 0, "target": 0}


def test_stocktake_posts_an_adjustment_per_difference(inv):
    build_tree(inv)
    receive(inv, "KL-T01", "TENT", 10)
    receive(inv, "KL-T01", "QUILT", 5)
    receive(inv, "KL-T01", "WATER", 6, expires_on="2027-01-01")
    receive(inv, "KL-T01", "WATER", 6, expires_on="2026-10-01")
    keeper = inv.as_("keeper", "KL-T01", actor="t01")
    counted = keeper.post("/api/v1/stocktakes", {
        "warehouse": "KL-T01", "reference": "ST-2026-11",
        "counts": [{"item": "TENT", "counted": 8}, {"item": "QUILT", "counted": 5},
                   {"item": "WATER", "counted": 4}]})
    assert counted.status_code == 201, counted.get_json()
    assert counted.get_json() == {"warehouse": "KL-T01", "differences": [
        {"item": "TENT", "expected": 10, "counted": 8, "difference": -2},
        {"item": "WATER", "expected": 12, "counted": 4, "difference": -8}]}
    card = inv.get("/api/v1/movements?warehouse=KL-T01&item=WATER").get_json()["items"]
    assert [(m["kind"], m["quantity"], m["expires_on"], m["reason"], m["actor"]) for m in card[2:]
            ] == [("adjustment", -6, "2026-10-01", "stocktake", "t01"),
                  ("adjustment", -2, "2027-01-01", "stocktake", "t01")]
    surplus = keeper.post("/api/v1/stocktakes", {
        "warehouse": "KL-T01", "reason": "found a pallet",
        "counts": [{"item": "WATER", "counted": 10, "lot": "P-1", "expires_on": "2027-05-01"},
                   {"item": "TENT", "counted": 8}]})
    assert surplus.get_json()["differences"] == [
        {"item": "WATER", "expected": 4, "counted": 10, "difference": 6}]
    last = inv.get("/api/v1/movements?warehouse=KL-T01&item=WATER").get_json()["items"][-1]
    assert (last["quantity"], last["lot"], last["reason"]) == (6, "P-1", "found a pallet")
    fresh = keeper.post("/api/v1/stocktakes", {"warehouse": "KL-T01-V01", "counts": [
        {"item": "QUILT", "counted": 3}]})
    assert fresh.get_json()["differences"] == [
        {"item": "QUILT", "expected": 0, "counted": 3, "difference": 3}]
    for warehouse, item, expected in (("KL-T01", "TENT", 8), ("KL-T01", "QUILT", 5),
                                      ("KL-T01", "WATER", 10), ("KL-T01-V01", "QUILT", 3)):
        assert stock(inv, warehouse, item)["on_hand"] == expected
