"""Movements and the ledger (stock card), lots and first-expiry-first-out, batches, balances,
levels and the network summary."""

from __future__ import annotations

from factories import build_tree, receive


def post(inv, **line):
    return inv.post("/api/v1/movements", line)


def ledger(inv, query: str = "") -> list[dict]:
    lines, cursor = [], None
    while True:
        page = inv.get(f"/api/v1/movements?limit=7{query}"
                       + (f"&cursor={cursor}" if cursor else "")).get_json()
        lines += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return lines


def balances(inv, query: str = "") -> dict:
    response = inv.get("/api/v1/stock?limit=1000" + query)
    assert response.status_code == 200, response.get_json()
    return {(row["warehouse"], row["item"]): row for row in response.get_json()["items"]}


def test_movements_answer_the_balance_and_the_ledger_adds_up(inv):
    build_tree(inv)
    receipt = receive(inv, "KL-T01", "TENT", 10, reference="PO-1")
    assert {k: receipt[k] for k in ("warehouse", "item", "kind", "quantity", "on_hand",
                                    "reserved", "available", "min", "target")} == {
        "warehouse": "KL-T01", "item": "TENT", "kind": "receipt", "quantity": 10,
        "on_hand": 10, "reserved": 0, "available": 10, "min": 0, "target": 0}
    [line] = receipt["lines"]
    assert line["id"] and line["balance_after"] == 10 and line["reference"] == "PO-1"
    assert line["actor"] == "tester" and line["at"].endswith("Z")
    issue = post(inv, warehouse="KL-T01", item="TENT", kind="issue", quantity=4,
                 reason="to shelter", reference="INC-7")
    assert issue.status_code == 201 and issue.get_json()["on_hand"] == 6
    assert issue.get_json()["quantity"] == -4
    minus = post(inv, warehouse="KL-T01", item="TENT", kind="adjustment", quantity=-1,
                 reason="torn")
    plus = post(inv, warehouse="KL-T01", item="TENT", kind="adjustment", quantity=3,
                reason="found in the back")
    assert (minus.get_json()["on_hand"], plus.get_json()["on_hand"]) == (5, 8)
    receive(inv, "KL-T02", "TENT", 5)
    card = ledger(inv, "&warehouse=KL-T01&item=TENT")
    assert [(m["kind"], m["quantity"]) for m in card] == [
        ("receipt", 10), ("issue", -4), ("adjustment", -1), ("adjustment", 3)]
    assert [m["id"] for m in card] == sorted(m["id"] for m in card)  # oldest first
    running = 0
    for line in card:
        running += line["quantity"]
        assert line["balance_after"] == running
    assert running == balances(inv)["KL-T01", "TENT"]["on_hand"] == 8
    assert card[1]["reason"] == "to shelter" and card[1]["reference"] == "INC-7"
    everything = ledger(inv)
    assert len(everything) == 5 and everything[-1]["warehouse"] == "KL-T02"
    for (warehouse, item), row in balances(inv).items():
        assert row["on_hand"] == sum(m["quantity"] for m in everything
                                     if (m["warehouse"], m["item"]) == (warehouse, item))
    since = card[2]["at"]
    later = inv.get(f"/api/v1/movements?warehouse=KL-T01&since={since}").get_json()["items"]
    assert [m["id"] for m in later] == [m["id"] for m in card[2:]]
    naive = inv.get("/api/v1/movements?since=2000-01-01T00:00:00").get_json()["items"]
    assert len(naive) == 5
    assert inv.get("/api/v1/movements?since=2999-01-01T00:00:00Z").get_json()["items"] == []


def test_perishables_leave_first_expiry_first(inv):
    build_tree(inv)
    receive(inv, "KL", "WATER", 5, lot="B", expires_on="2099-03-01")
    receive(inv, "KL", "WATER", 5, lot="A", expires_on="2099-01-01")
    receive(inv, "KL", "WATER", 5, expires_on="2099-06-01")  # unnamed, late
    receive(inv, "KL", "WATER", 5, expires_on="2098-12-01")  # unnamed, earliest
    receive(inv, "KL", "WATER", 2, lot="A", expires_on="2099-01-01")  # joins lot A
    issue = post(inv, warehouse="KL", item="WATER", kind="issue", quantity=9)
    assert issue.status_code == 201, issue.get_json()
    taken = [(line["lot"], line["expires_on"], line["quantity"])
             for line in issue.get_json()["lines"]]
    assert taken == [("", "2098-12-01", -5), ("A", "2099-01-01", -4)]
    assert [line["balance_after"] for line in issue.get_json()["lines"]] == [17, 13]
    named = post(inv, warehouse="KL", item="WATER", kind="issue", quantity=4, lot="B")
    assert [(ln["lot"], ln["quantity"]) for ln in named.get_json()["lines"]] == [("B", -4)]
    rest = post(inv, warehouse="KL", item="WATER", kind="issue", quantity=5)
    assert [(ln["lot"], ln["expires_on"], ln["quantity"]) for ln in rest.get_json()["lines"]
            ] == [("A", "2099-01-01", -3), ("B", "2099-03-01", -1), ("", "2099-06-01", -1)]
    assert rest.get_json()["on_hand"] == 4
    short = post(inv, warehouse="KL", item="WATER", kind="issue", quantity=1, lot="B")
    assert short.status_code == 409  # lot B is empty though 4 bottles remain
    assert short.get_json()["available"] == 0
    other_date = post(inv, warehouse="KL", item="WATER", kind="receipt", quantity=1, lot="A",
                      expires_on="2028-01-01")
    assert other_date.status_code == 422 and "expires_on" in other_date.get_json()["errors"]
    receive(inv, "KL", "TENT", 3, lot="T-1", expires_on="2030-01-01")
    joined = receive(inv, "KL", "TENT", 2, lot="T-1")  # a named lot given without its date
    assert joined["lines"][0]["expires_on"] == "2030-01-01"
    undated = receive(inv, "KL", "TENT", 2)
    assert undated["lines"][0]["expires_on"] is None
    tents = post(inv, warehouse="KL", item="TENT", kind="issue", quantity=6)
    assert [(ln["lot"], ln["quantity"]) for ln in tents.get_json()["lines"]] == [
        ("T-1", -5), ("", -1)]  # dated stock before undated


def test_batch_is_all_or_none(inv):
    build_tree(inv)
    receive(inv, "KL", "QUILT", 10)
    batch = inv.post("/api/v1/movements/batch", {"lines": [
        {"warehouse": "KL-T01", "item": "TENT", "kind": "receipt", "quantity": 5},
        {"warehouse": "KL-T01", "item": "TENT", "kind": "issue", "quantity": 2},
        {"warehouse": "KL", "item": "QUILT", "kind": "issue", "quantity": 10},
        {"warehouse": "KL-T02", "item": "WATER", "kind": "receipt", "quantity": 7,
         "lot": "W1", "expires_on": "2027-01-01"}]})
    assert batch.status_code == 201, batch.get_json()
    lines = batch.get_json()["lines"]
    assert [(ln["warehouse"], ln["item"], ln["kind"], ln["on_hand"]) for ln in lines] == [
        ("KL-T01", "TENT", "receipt", 5), ("KL-T01", "TENT", "issue", 3),
        ("KL", "QUILT", "issue", 0), ("KL-T02", "WATER", "receipt", 7)]
    before = ledger(inv)
    failed = inv.post("/api/v1/movements/batch", {"lines": [
        {"warehouse": "KL-T01", "item": "TENT", "kind": "issue", "quantity": 3},
        {"warehouse": "KL-T02", "item": "WATER", "kind": "issue", "quantity": 7},
        {"warehouse": "KL", "item": "QUILT", "kind": "issue", "quantity": 1}]})
    assert failed.status_code == 409 and failed.get_json()["line"] == 2
    assert ledger(inv) == before
    stock = balances(inv)
    assert stock["KL-T01", "TENT"]["on_hand"] == 3 and stock["KL-T02", "WATER"]["on_hand"] == 7
    too_many = inv.post("/api/v1/movements/batch", {"lines": [
        {"warehouse": "KL", "item": "QUILT", "kind": "receipt", "quantity": 1}] * 501})
    assert too_many.status_code == 422


def test_stock_listing_subtree_and_below_min(inv):
    build_tree(inv)
    for code, quantity in (("QDN", 100), ("KL", 50), ("KL-T01", 20), ("KL-T01-V01", 5),
                           ("KL-T02-V01", 3), ("LP", 40)):
        receive(inv, code, "TENT", quantity)
    receive(inv, "KL-T01", "QUILT", 8)
    levels = inv.put("/api/v1/warehouses/KL-T01/levels", {"levels": [
        {"item": "TENT", "min": 25, "target": 60}, {"item": "QUILT", "min": 5, "target": 10},
        {"item": "WATER", "min": 12, "target": 24}]})
    assert levels.status_code == 200, levels.get_json()
    assert [(r["item"], r["min"], r["target"], r["on_hand"]) for r in levels.get_json()["levels"]
            ] == [("TENT", 25, 60, 20), ("QUILT", 5, 10, 8), ("WATER", 12, 24, 0)]
    inv.put("/api/v1/warehouses/KL-T01-V01/levels", {"levels": [
        {"item": "TENT", "min": 5, "target": 10}]})
    subtree = balances(inv, "&warehouse=KL&subtree=true")
    assert sorted(subtree) == sorted([
        ("KL", "TENT"), ("KL-T01", "TENT"), ("KL-T01-V01", "TENT"), ("KL-T02-V01", "TENT"),
        ("KL-T01", "QUILT"), ("KL-T01", "WATER")])
    assert list(balances(inv, "&warehouse=KL")) == [("KL", "TENT")]
    tents = balances(inv, "&warehouse=KL-T01&subtree=true&item=TENT")
    assert {k: v["on_hand"] for k, v in tents.items()} == {("KL-T01", "TENT"): 20,
                                                           ("KL-T01-V01", "TENT"): 5}
    row = tents["KL-T01", "TENT"]
    assert row == {"warehouse": "KL-T01", "item": "TENT", "on_hand": 20, "reserved": 0,
                   "available": 20, "min": 25, "target": 60}
    below = balances(inv, "&below_min=true")
    assert sorted(below) == [("KL-T01", "TENT"), ("KL-T01", "WATER")]  # 5 is not below 5
    assert list(balances(inv, "&below_min=true&item=WATER")) == [("KL-T01", "WATER")]
    paged, cursor = [], None
    while True:
        page = inv.get("/api/v1/stock?limit=3" + (f"&cursor={cursor}" if cursor else ""))
        paged += [(r["warehouse"], r["item"]) for r in page.get_json()["items"]]
        cursor = page.get_json()["next_cursor"]
        if cursor is None:
            break
    assert paged == list(balances(inv)) and len(paged) == 8


def test_summary_by_level_and_county(inv):
    build_tree(inv)
    for code, item, quantity in (("QDN", "TENT", 100), ("KL", "TENT", 50),
                                 ("KL-T01", "TENT", 20), ("KL-T01-V01", "TENT", 5),
                                 ("KL-T02-V01", "TENT", 3), ("LP", "TENT", 40),
                                 ("KL-T01", "QUILT", 8)):
        receive(inv, code, item, quantity)
    inv.put("/api/v1/warehouses/LP/levels", {"levels": [{"item": "TENT", "min": 30,
                                                         "target": 80}]})
    hold = inv.post("/api/v1/reservations", {"lines": [{"warehouse": "LP", "item": "TENT",
                                                        "quantity": 15}]})
    assert hold.status_code == 201

    def summary(query):
        response = inv.get("/api/v1/stock/summary" + query)
        assert response.status_code == 200, response.get_json()
        return {(r["group"], r["item"]): (r["on_hand"], r["reserved"], r["available"], r["min"],
                                          r["warehouses"]) for r in response.get_json()["rows"]}

    assert inv.get("/api/v1/stock/summary").get_json()["by"] == "level"
    assert summary("") == {
        ("prefecture", "TENT"): (100, 0, 100, 0, 1),
        ("county", "TENT"): (90, 15, 75, 30, 2),
        ("township", "TENT"): (20, 0, 20, 0, 1),
        ("township", "QUILT"): (8, 0, 8, 0, 1),
        ("village", "TENT"): (8, 0, 8, 0, 2)}
    assert summary("?by=county") == {
        ("QDN", "TENT"): (100, 0, 100, 0, 1),
        ("KL", "TENT"): (78, 0, 78, 0, 4),
        ("KL", "QUILT"): (8, 0, 8, 0, 1),
        ("LP", "TENT"): (40, 15, 25, 30, 1)}
    assert summary("?by=county&item=QUILT") == {("KL", "QUILT"): (8, 0, 8, 0, 1)}
