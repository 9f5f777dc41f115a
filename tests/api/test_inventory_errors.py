"""Bad input, bad routes and bad callers: every one a 4xx problem+json carrying its request id,
and none of them writes anything (the tables are compared before and after)."""

from __future__ import annotations

import json
import time

import pytest
from factories import build_tree, receive
from sqlalchemy import text

from shared import auth

MOVEMENT = {"warehouse": "KL-T01", "item": "TENT", "kind": "issue", "quantity": 1}
PROBLEM_KEYS = ("type", "title", "status", "detail", "request_id")


def assert_problem(response, status: int, field: str | None = None) -> dict:
    """A problem of `status` in the contract's shape; `field` must be named in `errors`."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert all(key in body for key in PROBLEM_KEYS), body
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert isinstance(body["detail"], str) and body["detail"]
    assert response.headers["X-Request-ID"] == body["request_id"]
    assert "Traceback" not in response.get_data(as_text=True)
    if field is not None:
        assert field in body.get("errors", {}), body
    return body


def snapshot(database) -> dict:
    """Everything a command could write: row counts and balance sums of every table."""
    tables = ("warehouses", "items", "stock", "lots", "movements", "transfers",
              "transfer_lines", "reservations", "reservation_lines", "outbox")
    with database.engine.connect() as conn:
        state = {name: conn.execute(text(f"SELECT count(*) FROM {name}")).scalar()
                 for name in tables}
        # A client's keys; a signed call's own (sig:<nonce>) keeps even a refusal, for replays.
        state["idempotency_keys"] = conn.execute(text(
            "SELECT count(*) FROM idempotency_keys WHERE key NOT LIKE 'sig:%'")).scalar()
        state["stock_sums"] = tuple(conn.execute(text(
            "SELECT coalesce(sum(on_hand), 0), coalesce(sum(reserved), 0), "
            "coalesce(sum(min), 0), coalesce(sum(target), 0) FROM stock")).one())
        state["lot_sum"] = conn.execute(text("SELECT coalesce(sum(on_hand), 0) FROM lots")).scalar()
        state["paths"] = sorted(conn.execute(text("SELECT path, status, name FROM warehouses")))
        state["reservation_status"] = sorted(conn.execute(text(
            "SELECT id, status FROM reservations")))
        state["transfer_status"] = sorted(conn.execute(text("SELECT id, status FROM transfers")))
    return state


@pytest.fixture
def stocked(inv, inventory_db):
    """The tree with 10 tents at KL-T01, 5 bottles of water, a transfer in transit and a
    hold on 2 tents: something for every bad command to (not) change."""
    build_tree(inv)
    receive(inv, "KL-T01", "TENT", 10)
    receive(inv, "KL-T01", "WATER", 5)
    receive(inv, "KL", "QUILT", 20)
    transfer = inv.post("/api/v1/transfers", {"source": "KL", "destination": "KL-T02",
                                              "lines": [{"item": "QUILT", "quantity": 4}]})
    assert transfer.status_code == 201
    hold = inv.post("/api/v1/reservations", {"lines": [{"warehouse": "KL-T01", "item": "TENT",
                                                        "quantity": 2}]})
    assert hold.status_code == 201
    return {"transfer": transfer.get_json()["id"], "reservation": hold.get_json()["id"]}


RAW_MOVEMENTS = [  # (raw body, content type, status, field named in errors)
    (b'{"warehouse": "KL-T01", "item": "TENT", "kind": "issue", "quantity": 2.5}', None, 422,
     "quantity"),
    (b'{"warehouse": "KL-T01", "item": "TENT", "kind": "issue", "quantity": 2.5e-42}', None,
     422, "quantity"),
    (b'{"warehouse": "KL-T01", "item": "TENT", "kind": "receipt", "quantity": 1e400}', None,
     422, "quantity"),
    (b'{"warehouse": "KL-T01", "item": "TENT", "kind": "receipt", "quantity": NaN}', None, 422,
     "quantity"),
    (b'{"warehouse": "KL-T01", "item": "TENT", "kind": "receipt", "quantity": 2.0}', None, 422,
     "quantity"),
    (b'{"warehouse": "KL-T01", "item": "TENT", "kind": "receipt", "quantity": '
     + b"9" * 5000 + b"}", None, 400, None),
    (b'{"warehouse": "KL-T01", "item": ', None, 400, None),
    (b"\xff\xfe not utf-8", None, 400, None),
    (b"[" * 5000 + b"]" * 5000, None, 400, None),
    (b"[]", None, 422, None),
    (b'"receipt"', None, 422, None),
    (b"null", None, 422, None),
    (b"", None, 422, "quantity"),
    (b'{"warehouse": "KL-T01", "item": "TENT", "kind": "receipt", "quantity": 3}', "text/plain",
     415, None),
    (b"warehouse=KL-T01&item=TENT&kind=receipt&quantity=3",
     "application/x-www-form-urlencoded", 415, None),
    (b'{"warehouse": "KL-T01", "item": "TENT", "kind": "receipt", "quantity": 3}',
     "application/xml", 415, None),
]

BAD_MOVEMENTS = [  # (changes to a valid issue of 1 tent at KL-T01, status, field)
    ({"quantity": None}, 422, "quantity"),
    ({"quantity": "5"}, 422, "quantity"),
    ({"quantity": True}, 422, "quantity"),
    ({"quantity": [1]}, 422, "quantity"),
    ({"quantity": 0}, 422, "quantity"),
    ({"quantity": -1}, 422, "quantity"),
    ({"kind": "receipt", "quantity": -5}, 422, "quantity"),
    ({"kind": "receipt", "quantity": 10**9 + 1}, 422, "quantity"),
    ({"kind": "receipt", "quantity": 10**30}, 422, "quantity"),
    ({"kind": "adjustment", "quantity": -(10**12), "reason": "x"}, 422, "quantity"),
    ({"kind": "adjustment", "quantity": -3}, 422, "reason"),
    ({"kind": "steal"}, 422, "kind"),
    ({"kind": None}, 422, "kind"),
    ({"warehouse": 7}, 422, "warehouse"),
    ({"warehouse": "NOPE"}, 422, "warehouse"),
    ({"warehouse": "KL-T01\n"}, 422, "warehouse"),
    ({"warehouse": ""}, 422, "warehouse"),
    ({"item": "NOPE"}, 422, "item"),
    ({"item": False}, 422, "item"),
    ({"colour": "red"}, 422, "colour"),
    ({"expires_on": "2027-02-30"}, 422, "expires_on"),
    ({"expires_on": 20270101}, 422, "expires_on"),
    ({"lot": ""}, 422, "lot"),
    ({"lot": "x" * 65}, 422, "lot"),
    ({"reason": "r" * 401}, 422, "reason"),
    ({"reason": "nul \x00 inside"}, 422, "reason"),
    ({"reference": "lone \ud800 surrogate"}, 422, "reference"),
    ({"kind": "receipt", "item": "WATER", "quantity": 3}, 422, "expires_on"),
    ({"quantity": 9}, 409, None),  # 10 on hand, 2 held: 8 available
    ({"item": "QUILT"}, 409, None),  # never stocked here
    ({"kind": "adjustment", "quantity": -9, "reason": "broken"}, 409, None),
    ({"lot": "NO-SUCH-LOT"}, 409, None),
]


def test_bad_movements_are_4xx_problems_and_write_nothing(inv, inventory_db, stocked):
    before = snapshot(inventory_db)
    for changes, status, field in BAD_MOVEMENTS:
        body = {key: value for key, value in {**MOVEMENT, **changes}.items()}
        response = inv.post("/api/v1/movements", body)
        assert_problem(response, status, field)
        batch = inv.post("/api/v1/movements/batch", {"lines": [
            {"warehouse": "KL-T01-V01", "item": "QUILT", "kind": "receipt", "quantity": 1},
            body]})
        assert batch.status_code == status, (changes, batch.get_json())
        if status == 422:
            assert any(key.startswith("lines.1.") for key in batch.get_json()["errors"])
    for raw, content_type, status, field in RAW_MOVEMENTS:
        response = inv.call("POST", "/api/v1/movements", raw=raw,
                            headers={"Content-Type": content_type or "application/json"})
        assert_problem(response, status, field)
    assert snapshot(inventory_db) == before


def test_a_quantity_signed_against_its_kind_is_422_naming_it(inv, inventory_db, stocked):
    """Receipts and issues give how much (positive); only an adjustment gives a signed change.
    Checked with the body, before anything is looked up or any role is weighed."""
    before = snapshot(inventory_db)
    for kind in ("receipt", "issue"):
        body = assert_problem(inv.as_("viewer").post("/api/v1/movements", {
            **MOVEMENT, "kind": kind, "quantity": -2}), 422)
        assert list(body["errors"]) == ["quantity"]
        assert "positive" in body["errors"]["quantity"][0]
        batch = assert_problem(inv.post("/api/v1/movements/batch", {"lines": [
            {**MOVEMENT, "kind": "receipt", "quantity": 1},
            {**MOVEMENT, "kind": kind, "quantity": -2}]}), 422)
        assert list(batch["errors"]) == ["lines.1.quantity"]
    assert snapshot(inventory_db) == before
    down = inv.post("/api/v1/movements", {**MOVEMENT, "kind": "adjustment", "quantity": -2,
                                          "reason": "broken"})
    assert down.status_code == 201 and down.get_json()["quantity"] == -2


def test_an_issue_over_available_says_what_is_available(inv, inventory_db, stocked):
    before = snapshot(inventory_db)
    response = inv.post("/api/v1/movements", {**MOVEMENT, "quantity": 9})
    body = assert_problem(response, 409)
    assert body["available"] == 8 and body["requested"] == 9
    assert body["warehouse"] == "KL-T01" and body["item"] == "TENT"
    batch = inv.post("/api/v1/movements/batch", {"lines": [
        {"warehouse": "KL-T01", "item": "QUILT", "kind": "receipt", "quantity": 5},
        {**MOVEMENT, "quantity": 3},
        {**MOVEMENT, "quantity": 6}]})  # 8 available: the third line is 1 short
    body = assert_problem(batch, 409)
    assert body["line"] == 2 and body["available"] == 5
    assert snapshot(inventory_db) == before


def test_bad_bodies_on_every_other_command_write_nothing(inv, inventory_db, stocked):
    before = snapshot(inventory_db)
    transfer, hold = stocked["transfer"], stocked["reservation"]
    cases = [
        ("POST", "/api/v1/warehouses", {"code": "V9", "name": "v", "level": "village",
                                        "parent": "KL"}, 422, "parent"),
        ("POST", "/api/v1/warehouses", {"code": "T9", "name": "t", "level": "township",
                                        "parent": "QDN"}, 422, "parent"),
        ("POST", "/api/v1/warehouses", {"code": "T9", "name": "t", "level": "township",
                                        "parent": "NOPE"}, 422, "parent"),
        ("POST", "/api/v1/warehouses", {"code": "C9", "name": "c", "level": "county"}, 422,
         "parent"),
        ("POST", "/api/v1/warehouses", {"code": "P2", "name": "p", "level": "prefecture"}, 409,
         "level"),
        ("POST", "/api/v1/warehouses", {"code": "P2", "name": "p", "level": "prefecture",
                                        "parent": "QDN"}, 422, "parent"),
        ("POST", "/api/v1/warehouses", {"code": "KL", "name": "again", "level": "county",
                                        "parent": "QDN"}, 409, "code"),
        ("POST", "/api/v1/warehouses", {"code": "C9", "name": "c", "level": "city",
                                        "parent": "QDN"}, 422, "level"),
        ("POST", "/api/v1/warehouses", {"code": "C 9", "name": "c", "level": "county",
                                        "parent": "QDN"}, 422, "code"),
        ("POST", "/api/v1/warehouses", {"code": "C" * 41, "name": "c", "level": "county",
                                        "parent": "QDN"}, 422, "code"),
        ("POST", "/api/v1/warehouses", {"code": "C9", "name": "c", "level": "county",
                                        "parent": "QDN", "lon": 200}, 422, "lon"),
        ("POST", "/api/v1/warehouses", {"code": "C9", "name": "c", "level": "county",
                                        "parent": "QDN", "lat": "north"}, 422, "lat"),
        ("POST", "/api/v1/warehouses", {"code": "C9", "name": "c", "level": "county",
                                        "parent": "QDN", "status": "open"}, 422, "status"),
        ("POST", "/api/v1/warehouses", {"code": "C9", "name": "", "level": "county",
                                        "parent": "QDN"}, 422, "name"),
        ("PATCH", "/api/v1/warehouses/KL-T01", {"level": "county"}, 422, "level"),
        ("PATCH", "/api/v1/warehouses/KL-T01", {"parent": "KL-T02"}, 422, "parent"),
        ("PATCH", "/api/v1/warehouses/KL-T01", {"parent": None}, 422, "parent"),
        ("PATCH", "/api/v1/warehouses/KL-T01", {"status": "gone"}, 422, "status"),
        ("PATCH", "/api/v1/warehouses/NOPE", {"name": "x"}, 404, None),
        ("POST", "/api/v1/items", {"sku": "TENT", "name": "t", "unit": "piece"}, 409, "sku"),
        ("POST", "/api/v1/items", {"sku": "X", "name": "x", "unit": "piece",
                                   "perishable": "maybe"}, 422, "perishable"),
        ("POST", "/api/v1/items", {"sku": "X", "name": "x", "unit": "piece",
                                   "unit_weight_kg": -1}, 422, "unit_weight_kg"),
        ("POST", "/api/v1/items", {"sku": "X", "name": "x", "unit": "piece",
                                   "per_person": True}, 422, "per_person"),
        ("POST", "/api/v1/items", {"sku": "X", "name": "x"}, 422, "unit"),
        ("PUT", "/api/v1/warehouses/KL/levels", {"levels": [{"item": "TENT", "min": 5,
                                                             "target": 4}]}, 422,
         "levels.0.target"),
        ("PUT", "/api/v1/warehouses/KL/levels", {"levels": [{"item": "TENT", "min": -1,
                                                             "target": 4}]}, 422,
         "levels.0.min"),
        ("PUT", "/api/v1/warehouses/KL/levels", {"levels": [{"item": "TENT", "min": 1,
                                                             "target": 4},
                                                            {"item": "NOPE", "min": 1,
                                                             "target": 4}]}, 422,
         "levels.1.item"),
        ("PUT", "/api/v1/warehouses/NOPE/levels", {"levels": [{"item": "TENT", "min": 1,
                                                               "target": 4}]}, 404, None),
        ("PUT", "/api/v1/warehouses/KL/levels", {"levels": []}, 422, "levels"),
        ("POST", "/api/v1/stocktakes", {"warehouse": "KL-T01", "counts": [
            {"item": "TENT", "counted": -1}]}, 422, "counts.0.counted"),
        ("POST", "/api/v1/stocktakes", {"warehouse": "KL-T01", "counts": [
            {"item": "TENT", "counted": 3}, {"item": "TENT", "counted": 4}]}, 422,
         "counts.1.item"),
        ("POST", "/api/v1/stocktakes", {"warehouse": "KL-T01", "counts": [
            {"item": "TENT", "counted": 1}]}, 422, "counts.0.counted"),  # 2 are held
        ("POST", "/api/v1/stocktakes", {"warehouse": "KL-T01", "counts": [
            {"item": "QUILT", "counted": 7}, {"item": "WATER", "counted": 9}]}, 422,
         "counts.1.expires_on"),
        ("POST", "/api/v1/transfers", {"source": "KL", "destination": "KL", "lines": [
            {"item": "QUILT", "quantity": 1}]}, 422, "destination"),
        ("POST", "/api/v1/transfers", {"source": "KL", "destination": "LP", "lines": [
            {"item": "QUILT", "quantity": 1}, {"item": "TENT", "quantity": 1}]}, 409, None),
        ("POST", "/api/v1/transfers", {"source": "KL", "destination": "LP", "lines": []}, 422,
         "lines"),
        ("POST", "/api/v1/transfers", {"source": "KL", "destination": "LP", "lines": [
            {"item": "QUILT", "quantity": 0}]}, 422, "lines.0.quantity"),
        ("POST", f"/api/v1/transfers/{transfer}/receive", {"lines": [
            {"item": "QUILT", "received": 3}]}, 422, "lines.reason"),
        ("POST", f"/api/v1/transfers/{transfer}/receive", {"lines": [
            {"item": "QUILT", "received": 5}]}, 422, "lines.received"),
        ("POST", f"/api/v1/transfers/{transfer}/receive", {"lines": [
            {"item": "TENT", "received": 1}]}, 422, "lines.item"),
        ("POST", "/api/v1/transfers/999/receive", {}, 404, None),
        ("POST", "/api/v1/reservations", {"lines": []}, 422, "lines"),
        ("POST", "/api/v1/reservations", {"lines": [{"warehouse": "KL-T01", "item": "TENT",
                                                     "quantity": 1}], "ttl_seconds": 0}, 422,
         "ttl_seconds"),
        ("POST", "/api/v1/reservations", {"lines": [{"warehouse": "KL-T01", "item": "TENT",
                                                     "quantity": 1.5}]}, 422,
         "lines.0.quantity"),
        ("POST", "/api/v1/reservations", {"lines": [{"warehouse": "NOPE", "item": "TENT",
                                                     "quantity": 1}]}, 422, "lines.warehouse"),
        ("POST", "/api/v1/reservations", {"lines": [
            {"warehouse": "KL-T01", "item": "TENT", "quantity": 8},
            {"warehouse": "KL", "item": "QUILT", "quantity": 17}]}, 409, None),
        ("POST", "/api/v1/reservations/999/commit", None, 404, None),
        ("POST", "/api/v1/reservations/99999999999999999999/release", None, 404, None),
        ("POST", f"/api/v1/reservations/{hold}/release", {"lines": [
            {"warehouse": "KL-T01", "item": "TENT", "quantity": 3}]}, 422, "lines.0.quantity"),
    ]
    for method, path, body, status, field in cases:
        response = inv.call(method, path, body)
        assert_problem(response, status, field)
    assert snapshot(inventory_db) == before


def test_bad_queries_routes_and_methods(inv, inventory_db, stocked):
    before = snapshot(inventory_db)
    for path, status, field in [
        ("/api/v1/stock?subtree=maybe", 422, "subtree"),
        ("/api/v1/stock?limit=0", 422, "limit"),
        ("/api/v1/stock?limit=1001", 422, "limit"),
        ("/api/v1/stock?limit=abc", 422, "limit"),
        ("/api/v1/stock?cursor=abc", 422, "cursor"),
        ("/api/v1/stock?cursor=-1", 422, "cursor"),
        ("/api/v1/stock?warehouse=NOPE", 422, "warehouse"),
        ("/api/v1/stock?warehouse=K%20L", 422, "warehouse"),
        ("/api/v1/stock/summary?by=township", 422, "by"),
        ("/api/v1/stock/summary?item=NOPE", 422, "item"),
        ("/api/v1/movements?since=yesterday", 422, "since"),
        ("/api/v1/movements?since=0001-01-01T00:00:00%2B05:00", 422, "since"),
        ("/api/v1/movements?since=9999-12-31T23:59:59-05:00", 422, "since"),
        ("/api/v1/movements?item=NOPE", 422, "item"),
        ("/api/v1/warehouses?level=city", 422, "level"),
        ("/api/v1/warehouses?parent=NOPE", 422, "parent"),
        ("/api/v1/transfers?status=lost", 422, "status"),
        ("/api/v1/warehouses/NOPE", 404, None),
        ("/api/v1/warehouses/-KL", 404, None),
        ("/api/v1/items/a.b-c_d", 404, None),
        ("/api/v1/items/NOPE", 404, None),
        ("/api/v1/transfers/999", 404, None),
        ("/api/v1/transfers/99999999999999999999999", 404, None),
        ("/api/v1/transfers/abc", 404, None),
        ("/api/v1/reservations/0", 404, None),
        ("/api/v1/nope", 404, None),
        ("/nope", 404, None),
    ]:
        assert_problem(inv.get(path), status, field)
    for method, path in [("DELETE", "/api/v1/movements"), ("PUT", "/api/v1/items"),
                         ("DELETE", "/api/v1/warehouses/KL"), ("GET", "/api/v1/stocktakes"),
                         ("GET", "/api/v1/movements/batch"), ("PATCH", "/api/v1/stock")]:
        response = inv.call(method, path)
        assert_problem(response, 405)
        allowed = {m.strip() for m in response.headers["Allow"].split(",")}
        assert method not in allowed and allowed & {"GET", "POST", "PUT", "PATCH"}
    huge = json.dumps({**MOVEMENT, "reason": "x" * (5 * 1024 * 1024)}).encode()
    assert_problem(inv.call("POST", "/api/v1/movements", raw=huge), 413)
    assert_problem(inv.post("/api/v1/movements", {**MOVEMENT, "kind": "receipt"},
                            headers={"Idempotency-Key": "k" * 201}), 422, "Idempotency-Key")
    assert snapshot(inventory_db) == before


def test_request_id_is_echoed_or_made(inv, stocked):
    mine = inv.get("/api/v1/items/NOPE", headers={"X-Request-ID": "trace-42.a:b"})
    assert assert_problem(mine, 404)["request_id"] == "trace-42.a:b"
    ok = inv.get("/api/v1/items", headers={"X-Request-ID": "trace-43"})
    assert ok.status_code == 200 and ok.headers["X-Request-ID"] == "trace-43"
    made = inv.get("/api/v1/items/NOPE", headers={"X-Request-ID": "bad id with spaces"})
    body = assert_problem(made, 404)
    assert body["request_id"] != "bad id with spaces" and len(body["request_id"]) == 32


# --- who may do what -------------------------------------------------------------------------


def signed(inv, identity, method, path, body=None, now=None, secret=None):
    raw = b"" if body is None else json.dumps(body).encode()
    headers = auth.sign(secret or inv.secret, identity, method, path, raw, now=now)
    if raw:
        headers["Content-Type"] = "application/json"
    return headers, raw


def test_missing_stale_and_forged_identities_are_401(inv, inventory_db, stocked):
    before = snapshot(inventory_db)
    keeper = auth.Identity("k1", "keeper", ("KL-T01",))
    body = {**MOVEMENT, "kind": "receipt"}
    path = "/api/v1/movements"
    attempts = []
    attempts.append(({"Content-Type": "application/json"}, json.dumps(body).encode()))
    attempts.append(signed(inv, keeper, "POST", path, body, now=time.time() - 3600))
    attempts.append(signed(inv, keeper, "POST", path, body, now=time.time() + 3600))
    attempts.append(signed(inv, keeper, "POST", path, body, secret="another-secret-0123456789"))
    headers, _ = signed(inv, keeper, "POST", path, body)
    attempts.append((headers, json.dumps({**body, "quantity": 1000}).encode()))  # other body
    headers, raw = signed(inv, keeper, "POST", path, body)
    attempts.append(({**headers, auth.H_ROLE: "admin"}, raw))  # promoted after signing
    headers, raw = signed(inv, keeper, "POST", path, body)
    attempts.append(({**headers, auth.H_SCOPE: "QDN"}, raw))  # scope widened after signing
    headers, raw = signed(inv, keeper, "POST", path, body)
    attempts.append(({**headers, auth.H_TIMESTAMP: "soon"}, raw))
    headers, raw = signed(inv, keeper, "GET", path, body)  # signed for another method
    attempts.append((headers, raw))
    headers, raw = signed(inv, keeper, "POST", "/api/v1/movements/batch", body)  # other path
    attempts.append((headers, raw))
    headers, raw = signed(inv, keeper, "POST", path, body)
    attempts.append(({**headers, auth.H_ROLE: "superuser"}, raw))
    for headers, raw in attempts:
        response = inv.client.post(path, data=raw, headers=headers)
        assert_problem(response, 401)
    assert_problem(inv.client.get("/api/v1/stock"), 401)
    headers, _ = signed(inv, keeper, "GET", "/api/v1/stock?warehouse=KL")
    assert_problem(inv.client.get("/api/v1/stock?warehouse=KL-T01", headers=headers), 401)
    assert inv.client.get("/healthz").status_code == 200
    assert inv.client.get("/api/v1/openapi.json").status_code == 200
    assert snapshot(inventory_db) == before


def test_keeper_scope_follows_the_tree(inv, inventory_db, stocked):
    def receipt(caller, code):
        return caller.post("/api/v1/movements", {"warehouse": code, "item": "TENT",
                                                 "kind": "receipt", "quantity": 1})

    village = inv.as_("keeper", "KL-T01-V01")
    assert receipt(village, "KL-T01-V01").status_code == 201  # own village
    before = snapshot(inventory_db)
    for code in ("KL-T01-V02", "KL-T01", "KL", "QDN", "KL-T02-V01"):
        assert_problem(receipt(village, code), 403)  # neighbour, parents, elsewhere
    township = inv.as_("keeper", "KL-T01")
    assert snapshot(inventory_db) == before
    for code in ("KL-T01", "KL-T01-V01", "KL-T01-V02"):  # the township and its villages
        assert receipt(township, code).status_code == 201
    before = snapshot(inventory_db)
    for code in ("KL-T02", "KL-T02-V01", "KL", "LP"):
        assert_problem(receipt(township, code), 403)
    two = inv.as_("keeper", "KL-T02", "LP")
    assert receipt(two, "KL-T02-V01").status_code == 201
    assert receipt(two, "LP").status_code == 201
    assert_problem(receipt(inv.as_("keeper"), "KL-T01"), 403)  # a keeper of nothing
    batch = township.post("/api/v1/movements/batch", {"lines": [
        {"warehouse": "KL-T01", "item": "TENT", "kind": "receipt", "quantity": 1},
        {"warehouse": "KL-T02", "item": "TENT", "kind": "receipt", "quantity": 1}]})
    assert assert_problem(batch, 403)["line"] == 1
    stocktake = township.post("/api/v1/stocktakes", {"warehouse": "KL-T02", "counts": [
        {"item": "TENT", "counted": 0}]})
    assert_problem(stocktake, 403)
    after = snapshot(inventory_db)
    assert after["movements"] == before["movements"] + 2


def test_roles(inv, inventory_db, stocked):
    viewer, commander = inv.as_("viewer"), inv.as_("commander")
    keeper, integration = inv.as_("keeper", "KL"), inv.as_("integration")
    before = snapshot(inventory_db)
    for caller in (viewer, commander, integration):
        assert_problem(caller.post("/api/v1/movements", {**MOVEMENT, "kind": "receipt"}), 403)
        assert_problem(caller.post("/api/v1/stocktakes", {"warehouse": "KL-T01", "counts": [
            {"item": "TENT", "counted": 10}]}), 403)
    for caller in (viewer, keeper, commander, integration):
        assert_problem(caller.post("/api/v1/warehouses", {"code": "C9", "name": "c",
                                                          "level": "county",
                                                          "parent": "QDN"}), 403)
        assert_problem(caller.patch("/api/v1/warehouses/KL", {"name": "renamed"}), 403)
        assert_problem(caller.post("/api/v1/items", {"sku": "X", "name": "x",
                                                     "unit": "piece"}), 403)
    for caller in (viewer, keeper):
        assert_problem(caller.put("/api/v1/warehouses/KL/levels", {"levels": [
            {"item": "TENT", "min": 1, "target": 2}]}), 403)
        assert_problem(caller.post("/api/v1/reservations", {"lines": [
            {"warehouse": "KL-T01", "item": "TENT", "quantity": 1}]}), 403)
        assert_problem(caller.post(f"/api/v1/reservations/{stocked['reservation']}/commit"),
                       403)
        assert_problem(caller.post(f"/api/v1/reservations/{stocked['reservation']}/release"),
                       403)
    assert_problem(viewer.post("/api/v1/transfers", {"source": "KL", "destination": "LP",
                                                     "lines": [{"item": "QUILT",
                                                                "quantity": 1}]}), 403)
    assert snapshot(inventory_db) == before
    for caller in (viewer, keeper, commander, integration):  # everyone reads
        for path in ("/api/v1/warehouses", "/api/v1/items", "/api/v1/stock",
                     "/api/v1/movements", "/api/v1/stock/summary", "/api/v1/transfers",
                     "/api/v1/warehouses/KL", "/api/v1/items/TENT"):
            assert caller.get(path).status_code == 200, (caller.identity, path)
    assert commander.put("/api/v1/warehouses/KL/levels", {"levels": [
        {"item": "TENT", "min": 1, "target": 2}]}).status_code == 200
    for caller in (integration, inv.as_("service")):
        assert caller.post("/api/v1/reservations", {"lines": [
            {"warehouse": "KL-T01", "item": "TENT", "quantity": 1}]}).status_code == 201
