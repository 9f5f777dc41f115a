"""A signed call sent again unchanged (issue 13, item 3): its nonce names it, so the service
answers the first answer and counts it once, with or without an Idempotency-Key."""

from __future__ import annotations

import json

from factories import build_tree
from harness import SECRET

from shared import auth


def replayed(inv, path: str, payload: dict, times: int, headers: dict | None = None) -> list:
    body = json.dumps(payload).encode()
    signed = {**auth.sign(SECRET, auth.Identity("keeper-1", "admin"), "POST", path, body),
              **(headers or {}), "Content-Type": "application/json"}
    return [inv.client.post(path, data=body, headers=signed) for _ in range(times)]


def on_hand(inv, warehouse: str, item: str) -> int:
    rows = inv.get(f"/api/v1/stock?warehouse={warehouse}&item={item}").get_json()["items"]
    return rows[0]["on_hand"] if rows else 0


def test_a_receipt_replayed_four_times_counts_once(inv):
    build_tree(inv)
    answers = replayed(inv, "/api/v1/movements",
                       {"warehouse": "KL", "item": "TENT", "kind": "receipt", "quantity": 7}, 4)
    assert [a.status_code for a in answers] == [201] * 4
    assert {a.get_data() for a in answers} == {answers[0].get_data()}
    assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None] + ["true"] * 3
    assert "Idempotency-Key" not in answers[0].headers  # the implicit key stays inside
    assert on_hand(inv, "KL", "TENT") == 7
    card = inv.get("/api/v1/movements?warehouse=KL").get_json()["items"]
    assert len(card) == 1


def test_a_replayed_refusal_answers_the_same_refusal(inv):
    build_tree(inv)
    answers = replayed(inv, "/api/v1/movements",
                       {"warehouse": "KL", "item": "TENT", "kind": "issue", "quantity": 1}, 2)
    assert [a.status_code for a in answers] == [409, 409]
    assert answers[0].get_json()["detail"] == answers[1].get_json()["detail"]


def test_fresh_signatures_of_the_same_body_still_count_each_time(inv):
    build_tree(inv)
    line = {"warehouse": "KL", "item": "TENT", "kind": "receipt", "quantity": 2}
    for _ in range(3):
        assert inv.post("/api/v1/movements", line).status_code == 201
    assert on_hand(inv, "KL", "TENT") == 6
