"""Idempotency-Key: the same key with the same body gives the first answer again and changes
nothing, even when ten copies arrive at once; the same key with another body is 422."""

from __future__ import annotations

import json
import threading

from conftest import Caller
from factories import build_tree, receive
from sqlalchemy import text

ISSUE = {"warehouse": "KL-T01", "item": "TENT", "kind": "issue", "quantity": 3}


def count(database, table: str) -> int:
    with database.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def on_hand(inv, warehouse: str, item: str) -> int:
    rows = inv.get(f"/api/v1/stock?warehouse={warehouse}&item={item}").get_json()["items"]
    return rows[0]["on_hand"] if rows else 0


def all_at_once(app, calls: int, request) -> list:
    """`request(caller)` from `calls` threads, each with its own test client, released together."""
    barrier = threading.Barrier(calls)
    answers: list = [None] * calls

    def run(index: int) -> None:
        caller = Caller(app.test_client())
        barrier.wait()
        answers[index] = request(caller)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_ten_copies_at_once_make_one_movement(inv, inventory_app, inventory_db):
    build_tree(inv)
    receive(inv, "KL-T01", "TENT", 10)
    movements = count(inventory_db, "movements")

    def issue(caller):
        response = caller.post("/api/v1/movements", ISSUE, headers={"Idempotency-Key": "k-10"})
        return response.status_code, response.get_data(), response.headers.get("Idempotency-Key")

    answers = all_at_once(inventory_app, 10, issue)
    assert {status for status, _, _ in answers} == {201}
    assert len({body for _, body, _ in answers}) == 1  # ten identical answers
    assert {key for _, _, key in answers} == {"k-10"}
    assert json.loads(answers[0][1])["on_hand"] == 7
    assert count(inventory_db, "movements") == movements + 1
    assert on_hand(inv, "KL-T01", "TENT") == 7
    # ... and later retries too, flagged as replays
    again = inv.post("/api/v1/movements", ISSUE, headers={"Idempotency-Key": "k-10"})
    assert again.status_code == 201 and again.get_data() == answers[0][1]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert count(inventory_db, "movements") == movements + 1


def test_same_key_other_body_is_422_and_changes_nothing(inv, inventory_db):
    build_tree(inv)
    receive(inv, "KL-T01", "TENT", 10)
    first = inv.post("/api/v1/movements", ISSUE, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    before = count(inventory_db, "movements"), count(inventory_db, "outbox")
    other = inv.post("/api/v1/movements", {**ISSUE, "quantity": 4},
                     headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422
    assert other.mimetype == "application/problem+json"
    assert "Idempotency-Key" in other.get_json()["errors"]
    elsewhere = inv.post("/api/v1/movements/batch", {"lines": [ISSUE]},
                         headers={"Idempotency-Key": "k-1"})
    assert elsewhere.status_code == 422  # the same key on another command
    someone_else = inv.as_("keeper", "KL-T01", actor="another").post(
        "/api/v1/movements", ISSUE, headers={"Idempotency-Key": "k-1"})
    assert someone_else.status_code == 422  # the same key from another caller
    assert (count(inventory_db, "movements"), count(inventory_db, "outbox")) == before
    assert on_hand(inv, "KL-T01", "TENT") == 7
    # key order and spacing are not "another body"
    reordered = json.dumps(dict(reversed(list(ISSUE.items()))), indent=2).encode()
    same = inv.call("POST", "/api/v1/movements", raw=reordered,
                    headers={"Idempotency-Key": "k-1", "Content-Type": "application/json"})
    assert same.status_code == 201 and same.get_data() == first.get_data()
    assert on_hand(inv, "KL-T01", "TENT") == 7


def test_a_refusal_is_the_answer_a_retry_gets(inv, inventory_db):
    """A retry replays what the first attempt answered, a 409 included; new work takes a new
    key. A failure of ours (5xx) is not kept: see test_allocation_api for an unreachable side."""
    build_tree(inv)
    receive(inv, "KL-T01", "TENT", 2)
    short = inv.post("/api/v1/movements", ISSUE, headers={"Idempotency-Key": "k-retry"})
    assert short.status_code == 409
    assert short.mimetype == "application/problem+json"
    receive(inv, "KL-T01", "TENT", 1)
    retried = inv.post("/api/v1/movements", ISSUE, headers={"Idempotency-Key": "k-retry"})
    assert retried.status_code == 409 and retried.get_data() == short.get_data()
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert on_hand(inv, "KL-T01", "TENT") == 3
    fresh = inv.post("/api/v1/movements", ISSUE, headers={"Idempotency-Key": "k-again"})
    assert fresh.status_code == 201 and fresh.get_json()["on_hand"] == 0
    with inventory_db.engine.connect() as conn:
        keys = conn.execute(text("SELECT key FROM idempotency_keys WHERE key NOT LIKE 'sig:%'"))
        assert sorted(row[0] for row in keys) == ["k-again", "k-retry"]


def test_every_stock_command_replays(inv, inventory_db):
    """Each POST that changes stock, sent twice with its key, counts once."""
    build_tree(inv)
    receive(inv, "KL", "QUILT", 50)
    receive(inv, "KL-T01", "TENT", 10)
    commands = [
        ("/api/v1/movements/batch", {"lines": [
            {"warehouse": "KL", "item": "QUILT", "kind": "issue", "quantity": 5},
            {"warehouse": "KL-T01", "item": "TENT", "kind": "receipt", "quantity": 5}]}),
        ("/api/v1/transfers", {"source": "KL", "destination": "KL-T01",
                               "lines": [{"item": "QUILT", "quantity": 10}]}),
        ("/api/v1/stocktakes", {"warehouse": "KL-T01", "counts": [
            {"item": "TENT", "counted": 12}]}),
        ("/api/v1/reservations", {"lines": [{"warehouse": "KL", "item": "QUILT",
                                             "quantity": 4}]}),
    ]
    answers = {}
    for path, body in commands:
        first = inv.post(path, body, headers={"Idempotency-Key": "key:" + path})
        assert first.status_code == 201, first.get_json()
        movements = count(inventory_db, "movements")
        second = inv.post(path, body, headers={"Idempotency-Key": "key:" + path})
        assert second.status_code == 201 and second.get_data() == first.get_data()
        assert count(inventory_db, "movements") == movements
        answers[path] = first.get_json()
    transfer = answers["/api/v1/transfers"]["id"]
    hold = answers["/api/v1/reservations"]["id"]
    for path in (f"/api/v1/transfers/{transfer}/receive", f"/api/v1/reservations/{hold}/commit"):
        first = inv.post(path, {} if "receive" in path else None,
                         headers={"Idempotency-Key": "key:" + path})
        assert first.status_code == 200, first.get_json()
        second = inv.post(path, {} if "receive" in path else None,
                          headers={"Idempotency-Key": "key:" + path})
        assert second.status_code == 200 and second.get_data() == first.get_data()
    stock = {(row["warehouse"], row["item"]): row
             for row in inv.get("/api/v1/stock").get_json()["items"]}
    assert stock["KL", "QUILT"]["on_hand"] == 50 - 5 - 10 - 4
    assert stock["KL", "QUILT"]["reserved"] == 0
    assert stock["KL-T01", "QUILT"]["on_hand"] == 10
    assert stock["KL-T01", "TENT"]["on_hand"] == 12
