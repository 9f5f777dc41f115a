"""Races on a real PostgreSQL database: 32 threads, each with its own test client (so its own
connection from a pool big enough for all of them), hammering the same balances.

The ledger is the witness: 1,000 one-unit issues from a stock of 1,000 must leave exactly the
balances 999, 998, ..., 0 on their lines, once each. A sampler thread reads the balance all the
while and must never see it below zero, nor more reserved than on hand."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from conftest import Caller, fresh_pg_schema
from factories import receive
from sqlalchemy import text

from shared.db import Database

pytestmark = pytest.mark.postgres
THREADS = 32


@pytest.fixture
def race_db(pg_database):
    fresh_pg_schema(pg_database, "inventory_svc")
    database = Database(pg_database, pool_size=THREADS + 8, max_overflow=8)
    yield database
    database.dispose()


@pytest.fixture
def race_app(race_db, settings_for):
    from inventory_svc import create_app

    app = create_app(settings_for("inventory", race_db.url), race_db)
    admin = Caller(app.test_client())
    for warehouse in ({"code": "QDN", "name": "prefecture", "level": "prefecture"},
                      {"code": "KL", "name": "Kaili", "level": "county", "parent": "QDN"},
                      {"code": "LP", "name": "Liping", "level": "county", "parent": "QDN"}):
        assert admin.post("/api/v1/warehouses", warehouse).status_code == 201
    for sku in ("TENT", "QUILT"):
        assert admin.post("/api/v1/items", {"sku": sku, "name": sku.title(),
                                            "unit": "piece"}).status_code == 201
    return app


def race(app, threads: int, work) -> list:
    """Run `work(caller, index)` in `threads` threads released together; their results."""
    barrier = threading.Barrier(threads)
    results: list = [None] * threads
    errors: list = []

    def run(index: int) -> None:
        caller = Caller(app.test_client())
        barrier.wait()
        try:
            results[index] = work(caller, index)
        except BaseException as exc:  # surfaced below, with the thread's index
            errors.append((index, exc))

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=300)
    assert not errors, errors
    return results


class Sampler:
    """Reads every balance over and over while a race runs; remembers anything impossible."""

    def __init__(self, database: Database):
        self.database = database
        self.stop = threading.Event()
        self.seen = 0
        self.impossible: list = []
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stop.is_set():
            with self.database.engine.connect() as conn:
                for row in conn.execute(text("SELECT on_hand, reserved FROM stock")):
                    self.seen += 1
                    if row.on_hand < 0 or row.reserved < 0 or row.reserved > row.on_hand:
                        self.impossible.append(tuple(row))
            self.stop.wait(0.01)  # a look every 10 ms leaves the GIL to the racers

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        assert self.seen > 0 and self.impossible == []


def balance(database: Database, warehouse: str, item: str) -> tuple[int, int]:
    with database.engine.connect() as conn:
        return tuple(conn.execute(text(
            "SELECT s.on_hand, s.reserved FROM stock s JOIN warehouses w ON w.id = s.warehouse_id "
            "JOIN items i ON i.id = s.item_id WHERE w.code = :w AND i.sku = :i"),
            {"w": warehouse, "i": item}).one())


def ledger(database: Database, warehouse: str, item: str) -> list[tuple[int, int, str]]:
    with database.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(
            "SELECT m.quantity, m.balance_after, m.kind FROM movements m "
            "JOIN warehouses w ON w.id = m.warehouse_id JOIN items i ON i.id = m.item_id "
            "WHERE w.code = :w AND i.sku = :i ORDER BY m.id"), {"w": warehouse, "i": item})]


def test_32_threads_issuing_one_unit_50_times_from_1000(race_app, race_db):
    admin = Caller(race_app.test_client())
    receive(admin, "KL", "TENT", 1000)
    issue = {"warehouse": "KL", "item": "TENT", "kind": "issue", "quantity": 1}

    def work(caller, _index):
        answers = []
        for _ in range(50):
            response = caller.post("/api/v1/movements", issue)
            body = response.get_json()
            answers.append((response.status_code, body.get("available")))
        return answers

    with Sampler(race_db):
        results = race(race_app, THREADS, work)
    statuses = Counter(status for answers in results for status, _ in answers)
    assert statuses == {201: 1000, 409: 600}
    assert {available for answers in results for status, available in answers
            if status == 409} == {0}
    assert balance(race_db, "KL", "TENT") == (0, 0)
    lines = ledger(race_db, "KL", "TENT")
    assert sum(quantity for quantity, _, _ in lines) == 0
    issued = sorted(after for quantity, after, kind in lines if kind == "issue")
    assert issued == list(range(1000))  # each balance from 999 down to 0 exactly once


def test_32_threads_holding_one_unit_each_then_commit_and_release(race_app, race_db):
    admin = Caller(race_app.test_client())
    receive(admin, "KL", "TENT", 1000)
    line = {"warehouse": "KL", "item": "TENT", "quantity": 1}

    def reserve(caller, _index):
        held, refused = [], []
        for _ in range(33):
            response = caller.as_("service").post("/api/v1/reservations", {"lines": [line]})
            if response.status_code == 201:
                held.append(response.get_json()["id"])
            else:
                assert response.status_code == 409, response.get_json()
                refused.append(response.get_json()["shortfalls"])
        return held, refused

    with Sampler(race_db):
        results = race(race_app, THREADS, reserve)
    held = [rid for ids, _ in results for rid in ids]
    refused = [shortfalls for _, each in results for shortfalls in each]
    assert len(held) == 1000 and len(set(held)) == 1000 and len(refused) == THREADS * 33 - 1000
    assert all(shortfalls == [{"warehouse": "KL", "item": "TENT", "requested": 1,
                               "available": 0, "short": 1}] for shortfalls in refused)
    assert balance(race_db, "KL", "TENT") == (1000, 1000)

    # Now commit 300 and release 200 of them while others try to issue what gets freed.
    to_commit, to_release = held[:300], held[300:500]
    issue = {"warehouse": "KL", "item": "TENT", "kind": "issue", "quantity": 1}

    def settle(caller, index):
        service = caller.as_("service")
        if index % 2 == 0:  # 16 threads commit or release their share
            share = index // 2
            outcomes = []
            for rid in to_commit[share::16]:
                outcomes.append(("commit", service.post(
                    f"/api/v1/reservations/{rid}/commit").status_code))
            for rid in to_release[share::16]:
                outcomes.append(("release", service.post(
                    f"/api/v1/reservations/{rid}/release").status_code))
            return outcomes
        return [("issue", caller.post("/api/v1/movements", issue).status_code)
                for _ in range(15)]

    with Sampler(race_db):
        results = race(race_app, THREADS, settle)
    outcomes = Counter(outcome for answers in results for outcome in answers)
    assert outcomes[("commit", 200)] == 300 and outcomes[("release", 200)] == 200
    issued = outcomes[("issue", 201)]
    assert issued + outcomes[("issue", 409)] == 16 * 15 and issued <= 200
    while admin.post("/api/v1/movements", issue).status_code == 201:  # take what is left free
        issued += 1
    assert issued == 200
    assert balance(race_db, "KL", "TENT") == (500, 500)
    lines = ledger(race_db, "KL", "TENT")
    assert sum(quantity for quantity, _, _ in lines) == 500
    assert sorted(after for _, after, kind in lines if kind == "issue") == list(range(500, 1000))
    with race_db.engine.connect() as conn:
        statuses = dict(conn.execute(text(
            "SELECT status, count(*) FROM reservations GROUP BY status")).all())
    assert statuses == {"held": 500, "committed": 300, "released": 200}


def test_batches_touching_the_same_balances_in_opposite_orders_never_deadlock(race_app,
                                                                              race_db):
    admin = Caller(race_app.test_client())
    for warehouse in ("KL", "LP"):
        for item in ("TENT", "QUILT"):
            receive(admin, warehouse, item, 200)
    pairs = [("KL", "TENT"), ("KL", "QUILT"), ("LP", "TENT"), ("LP", "QUILT")]

    def work(caller, index):
        order = pairs if index % 2 else list(reversed(pairs))
        statuses = []
        for round_ in range(8):
            kind = "receipt" if round_ % 4 == 3 else "issue"
            response = caller.post("/api/v1/movements/batch", {"lines": [
                {"warehouse": w, "item": i, "kind": kind, "quantity": 1} for w, i in order]})
            statuses.append((kind, response.status_code))
        return statuses

    with Sampler(race_db):
        results = race(race_app, THREADS, work)
    outcomes = Counter(outcome for answers in results for outcome in answers)
    assert set(outcomes) <= {("issue", 201), ("receipt", 201), ("issue", 409)}
    expected = 200 - outcomes[("issue", 201)] + outcomes[("receipt", 201)]
    for warehouse, item in pairs:
        assert balance(race_db, warehouse, item) == (expected, 0)
        assert sum(q for q, _, _ in ledger(race_db, warehouse, item)) == expected


def test_a_transfer_is_received_once_however_many_try(race_app, race_db):
    admin = Caller(race_app.test_client())
    receive(admin, "KL", "QUILT", 50)
    sent = admin.post("/api/v1/transfers", {"source": "KL", "destination": "LP", "lines": [
        {"item": "QUILT", "quantity": 30}]}).get_json()

    def work(caller, _index):
        return caller.post(f"/api/v1/transfers/{sent['id']}/receive", {}).status_code

    results = race(race_app, 8, work)
    assert Counter(results) == {200: 1, 409: 7}
    assert balance(race_db, "LP", "QUILT") == (30, 0)
    assert balance(race_db, "KL", "QUILT") == (20, 0)


def test_a_stocktake_counts_against_a_balance_nobody_changes_under_it(race_app, race_db):
    admin = Caller(race_app.test_client())
    receive(admin, "KL", "TENT", 100_000)
    issue = {"warehouse": "KL", "item": "TENT", "kind": "issue", "quantity": 1}

    def work(caller, index):
        if index:  # 7 threads keep issuing while the first counts, again and again
            return [caller.post("/api/v1/movements", issue).status_code for _ in range(40)]
        counts = []
        for round_ in range(20):
            counted = 90_000 - 100 * round_
            response = caller.post("/api/v1/stocktakes", {
                "warehouse": "KL", "reference": f"count-{round_}",
                "counts": [{"item": "TENT", "counted": counted}]})
            assert response.status_code == 201, response.get_json()
            counts.append((f"count-{round_}", counted))
        return counts

    results = race(race_app, 8, work)
    assert all(status == 201 for statuses in results[1:] for status in statuses)
    with race_db.engine.connect() as conn:
        for reference, counted in results[0]:
            after = conn.execute(text("SELECT balance_after FROM movements WHERE reference = :r "
                                      "ORDER BY id DESC LIMIT 1"), {"r": reference}).scalar()
            assert after == counted, reference  # the count is what the balance became
    lines = ledger(race_db, "KL", "TENT")
    assert sum(quantity for quantity, _, _ in lines) == balance(race_db, "KL", "TENT")[0]
