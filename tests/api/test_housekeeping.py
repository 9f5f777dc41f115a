"""The background worker's housekeeping: holds past their time are freed without any read
having to write, a chore that fails does not stop the others, and the suite's worker runs the
chores of the services it was given."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from factories import build_tree, receive
from sqlalchemy import text

from emsupply.worker import Background, Housekeeping
from shared.config import load_settings


def test_a_failing_chore_is_logged_and_the_others_still_run(caplog):
    calls = []

    def broken() -> int:
        calls.append("broken")
        raise ConnectionError("inventory away")

    def fine() -> int:
        calls.append("fine")
        return 2

    chores = Housekeeping({"broken": broken, "fine": fine})
    with caplog.at_level(logging.WARNING, logger="emsupply.worker"):
        assert chores.run_once() == {"fine": 2}
        assert chores.run_once() == {"fine": 2}
    assert calls == ["broken", "fine", "broken", "fine"]
    assert chores.done == {"broken": 0, "fine": 4}
    assert "housekeeping broken failed: ConnectionError" in caplog.text


def test_the_worker_frees_overdue_holds_of_the_inventory(inv, inventory_db, tmp_path):
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    held = inv.post("/api/v1/reservations", {"lines": [
        {"warehouse": "KL", "item": "TENT", "quantity": 4}], "ttl_seconds": 3600}).get_json()
    with inventory_db.engine.begin() as conn:
        conn.execute(text("UPDATE reservations SET expires_at = :past WHERE id = :id"),
                     {"past": datetime.now(UTC) - timedelta(seconds=1), "id": held["id"]})
    env = {"EMSUPPLY_SECRET": "x" * 20, "EMSUPPLY_INVENTORY_DB": inventory_db.url}
    services = {"inventory": load_settings("inventory", env, data_dir=tmp_path)}
    background = Background(services, load_settings("gateway", env, data_dir=tmp_path),
                            "http://127.0.0.1:9")
    try:
        assert set(background.housekeeping.chores) == {"expire-holds",
                                                       "forget-inventory-answers"}
        assert background.housekeeping.run_once()["expire-holds"] == 1
        assert background.housekeeping.run_once()["expire-holds"] == 0
    finally:
        background.stop()
    with inventory_db.engine.connect() as conn:
        status, reserved = conn.execute(text(
            "SELECT r.status, s.reserved FROM reservations r, stock s "
            "WHERE r.id = :id AND s.reserved IS NOT NULL AND s.on_hand = 10"),
            {"id": held["id"]}).one()
    assert (status, reserved) == ("expired", 0)


def test_answers_nobody_can_ask_for_again_are_forgotten(inv, inventory_db):
    """A signed write's answer lives as long as its signature could be replayed; a client's
    Idempotency-Key answer a week."""
    from inventory_svc.models import idempotency
    from shared.web import forget_old_answers

    build_tree(inv)
    receive(inv, "KL", "TENT", 1)  # signed, without a key: kept under sig:<nonce>
    inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT", "kind": "receipt",
                                   "quantity": 1}, headers={"Idempotency-Key": "client-1"})

    def keys() -> set[str]:
        with inventory_db.engine.connect() as conn:
            return {row[0] for row in conn.execute(text("SELECT key FROM idempotency_keys"))}

    signed = {k for k in keys() if k.startswith("sig:")}
    assert signed and "client-1" in keys()
    now = datetime.now(UTC)
    assert forget_old_answers(inventory_db, idempotency, now) == 0
    assert forget_old_answers(inventory_db, idempotency, now + timedelta(hours=3)) >= 1
    assert "client-1" in keys() and not keys() & signed
    assert forget_old_answers(inventory_db, idempotency, now + timedelta(days=8)) >= 1
    assert "client-1" not in keys()
