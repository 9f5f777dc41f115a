"""Two of everything: `emsupply up --instances 2` runs two inventory and two allocation services
on one PostgreSQL database each and one Redis, behind one gateway that balances over them (and
the allocation services balance over the inventories). Under 16 keepers posting receipts and
issues with Idempotency-Keys (some sent twice, some by two keepers at once) while plans hold and
dispatch stock, the books stay exact: both instances of each service served calls, no balance
is negative, every balance is the sum of its ledger lines (and of its lots), what is reserved is
exactly what live holds hold (each plan's hold once), and every key was counted once.

Runs where CI's servers are (EMSUPPLY_TEST_PG_URL, EMSUPPLY_TEST_REDIS_URL)."""

from __future__ import annotations

import json
import os
import random
import threading
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import requests
from e2e_helpers import Up, clean_env, fresh_databases, wait_gone
from factories import ITEMS, TREE, road_node, roads_geojson
from ports import free_block
from sqlalchemy import create_engine, text

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
REDIS_URL = os.environ.get("EMSUPPLY_TEST_REDIS_URL", "")
API = "/api/v1"
KEEPERS, MOVES, PLANNERS = 16, 24, 4
STOCKED = ("TENT", "QUILT")  # not perishable: no expiry to think about
HOT = ("QDN", "TENT")  # the prefecture depot's tents: a third of every keeper's movements
START = {HOT: 60}  # little enough that issues run it dry (409s); the others 300


@pytest.fixture
def databases(pg_admin_url):
    """A fresh PostgreSQL database per service, dropped afterwards."""
    yield from fresh_databases(pg_admin_url, "emsupply_two")


def make_tokens(url: str) -> dict[str, object]:
    """Tokens made in the gateway's database, as `emsupply token create` makes them: an admin,
    a prefecture-wide commander and one keeper per thread (scope: the whole tree)."""
    from gateway import tokens
    from shared.db import Database

    db = Database(url)
    try:
        with db.unit_of_work() as session:
            return {"admin": tokens.create(session, "admin", (), "two-admin").token,
                    "commander": tokens.create(session, "commander", (), "two-commander").token,
                    "keepers": [tokens.create(session, "keeper", ("QDN",), f"keeper-{k}").token
                                for k in range(KEEPERS)]}
    finally:
        db.dispose()


class Api:
    """Calls through the gateway with one bearer token."""

    def __init__(self, base: str, token: str):
        self.base = base + API
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, body: dict | None = None, key: str | None = None):
        headers = {"Idempotency-Key": key} if key else {}
        return self.session.post(self.base + path, json=body, headers=headers, timeout=60)

    def put(self, path: str, body: dict):
        return self.session.put(self.base + path, json=body, timeout=60)

    def get(self, path: str):
        return self.session.get(self.base + path, timeout=60)


def setup_world(admin: Api) -> dict[tuple[str, str], int]:
    """The small tree with its roads, two items, and stock in every depot; what was received."""
    for warehouse in TREE:
        made = admin.post("/warehouses", {**warehouse, "road_node": road_node(warehouse["code"])})
        assert made.status_code == 201, made.text
    for item in ITEMS:
        if item["sku"] in STOCKED:
            assert admin.post("/items", item).status_code == 201
    assert admin.put("/roads", roads_geojson()).status_code == 200
    received = {}
    for warehouse in TREE:
        for sku in STOCKED:
            balance = (warehouse["code"], sku)
            received[balance] = START.get(balance, 300)
            answer = admin.post("/movements", {"warehouse": balance[0], "item": sku,
                                               "kind": "receipt",
                                               "quantity": received[balance]},
                                key=f"start-{balance[0]}-{sku}")
            assert answer.status_code == 201, answer.text
    return received


class Keepers:
    """16 keepers, each posting receipts and issues with keys of its own; a quarter of them
    sent twice in a row (a phone retrying), and one per pair of keepers sent by both at the same
    moment (the same keeper on two phones)."""

    def __init__(self, base: str, tokens: list[str]):
        self.apis = [Api(base, token) for token in tokens]
        self.sent: dict[str, dict] = {}  # key -> the movement asked for
        self.answers: dict[str, list[tuple[int, dict]]] = defaultdict(list)
        self.lock = threading.Lock()
        self.balances = [(w["code"], sku) for w in TREE for sku in STOCKED]
        self.together = [threading.Barrier(2) for _ in range(KEEPERS // 2)]
        self.calls = 0
        self.errors: list[str] = []

    def movement(self, rng: random.Random, key: str) -> dict:
        warehouse, item = HOT if rng.random() < 1 / 3 else rng.choice(self.balances)
        kind = rng.choice(("receipt", "issue", "issue"))  # more out than in: the hot one runs dry
        return {"warehouse": warehouse, "item": item, "kind": kind,
                "quantity": rng.randint(1, 5), "reference": key}

    def send(self, api: Api, key: str, body: dict) -> None:
        answer = api.post("/movements", body, key=key)
        with self.lock:
            self.calls += 1
            self.sent[key] = body
            self.answers[key].append((answer.status_code, answer.json()))
        if answer.status_code not in (201, 409):
            self.errors.append(f"{key}: {answer.status_code} {answer.text[:300]}")

    def keeper(self, k: int) -> None:
        rng = random.Random(k)
        api = self.apis[k]
        try:
            for i in range(MOVES):
                key = f"keeper-{k}-{i}"
                body = self.movement(rng, key)
                self.send(api, key, body)
                if rng.random() < 0.25:
                    self.send(api, key, body)  # the same call again: counted once
                if i == MOVES // 2:  # keepers k and k+8: one movement, both at once
                    pair = k % (KEEPERS // 2)
                    twin = f"twin-{pair}"
                    body = self.movement(random.Random(f"twin-{pair}"), twin)
                    self.together[pair].wait(30)
                    self.send(self.apis[pair], twin, body)  # the same token: the same request
        except Exception as exc:  # shown by the test, not lost in a thread
            self.errors.append(f"keeper {k}: {exc!r}")

    def run(self) -> None:
        threads = [threading.Thread(target=self.keeper, args=(k,)) for k in range(KEEPERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)


class Planners:
    """A few commanders at the same time: each declares an incident and asks for two plans
    (each sent twice with its key), dispatching the first; the second keeps its hold."""

    SITES = ("KL-T01-V01", "KL-T01-V02", "KL-T02-V01")

    def __init__(self, base: str, token: str):
        self.base, self.token = base, token
        self.plans: dict[int, dict] = {}
        self.refused: list[dict] = []
        self.lock = threading.Lock()
        self.errors: list[str] = []

    def planner(self, p: int) -> None:
        api = Api(self.base, self.token)
        try:
            site = self.SITES[p % len(self.SITES)]
            incident = api.post("/incidents", {"type": "flood", "sites": [
                {"id": f"S{p}", "warehouse": site, "population": 200}]})
            assert incident.status_code == 201, incident.text
            path = f"/incidents/{incident.json()['id']}/allocations"
            for n in range(2):
                body = {"demands": [{"site": f"S{p}", "item": "TENT", "quantity": 25 + 5 * n},
                                    {"site": f"S{p}", "item": "QUILT", "quantity": 40}]}
                first = api.post(path, body, key=f"plan-{p}-{n}")
                again = api.post(path, body, key=f"plan-{p}-{n}")
                assert (again.status_code, again.json()["id" if again.ok else "status"]) == \
                    (first.status_code, first.json()["id" if first.ok else "status"]), \
                    (first.text, again.text)
                if first.status_code != 201:  # the stock moved under it: refused, holds nothing
                    assert first.status_code == 409, first.text
                    self.refused.append(first.json())
                    continue
                plan = first.json()
                if n == 0:
                    dispatched = api.post(f"/allocations/{plan['id']}/dispatch",
                                          key=f"dispatch-{p}")
                    assert dispatched.status_code == 200, dispatched.text
                    plan = dispatched.json()
                with self.lock:
                    self.plans[plan["id"]] = plan
        except Exception as exc:
            self.errors.append(f"planner {p}: {exc!r}")

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.planner, args=(p,)) for p in range(PLANNERS)]
        for thread in threads:
            thread.start()
        return threads


def access_lines(log: Path) -> list[dict]:
    """The JSON access lines of one instance's log (what it answered)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if '"emsupply.access"' in line:
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


@pytest.mark.skipif(not REDIS_URL, reason="set EMSUPPLY_TEST_REDIS_URL to run against Redis")
def test_two_of_everything_keeps_the_books_exact_under_keepers_and_plans(tmp_path, databases):
    data_dir = tmp_path / "var"
    env = clean_env(EMSUPPLY_INVENTORY_DB=databases["inventory"],
                    EMSUPPLY_ALLOCATION_DB=databases["allocation"],
                    EMSUPPLY_GATEWAY_DB=databases["gateway"], EMSUPPLY_REDIS_URL=REDIS_URL,
                    EMSUPPLY_SECRET="two-of-everything-secret-0123456789",
                    EMSUPPLY_RATE_LIMIT="100000 per minute")
    port = free_block(5)
    suite = Up(data_dir, env=env, port=port, args=("--instances", "2", "--workers", "1"))
    try:
        suite.wait_ready(180)
        for name, offset in (("inventory", 1), ("inventory-2", 2), ("allocation", 3),
                             ("allocation-2", 4)):
            assert f"{name} " in suite.output and f"http://127.0.0.1:{port + offset} " \
                in suite.output, suite.output
        tokens = make_tokens(databases["gateway"])
        admin = Api(suite.url, tokens["admin"])
        ready = admin.session.get(f"{suite.url}/readyz", timeout=10).json()
        assert ready["status"] == "ready", ready
        assert {name: [(e["url"], e["ready"]) for e in report]
                for name, report in ready["checks"].items()} == {
            "inventory": [(f"http://127.0.0.1:{port + 1}", True),
                          (f"http://127.0.0.1:{port + 2}", True)],
            "allocation": [(f"http://127.0.0.1:{port + 3}", True),
                           (f"http://127.0.0.1:{port + 4}", True)]}
        received = setup_world(admin)

        keepers = Keepers(suite.url, tokens["keepers"])
        planners = Planners(suite.url, tokens["commander"])
        planning = planners.run()
        keepers.run()
        for thread in planning:
            thread.join(300)
        assert keepers.errors == [] and planners.errors == [], \
            keepers.errors[:5] + planners.errors

        assert planners.plans, "no plan held anything"
        check_instances(data_dir, keepers.calls + len(received))
        check_keys(keepers)
        check_books(databases["inventory"], keepers, planners, received)
    finally:
        code = suite.stop()
    assert code == 0, suite.output
    assert wait_gone(data_dir) == []


def check_instances(data_dir: Path, movements_sent: int) -> None:
    """Both instances of each service answered calls; the gateway sent each movement once."""
    logs = {name: access_lines(data_dir / "logs" / f"{name}.log")
            for name in ("inventory", "inventory-2", "allocation", "allocation-2")}
    movements = {name: sum(line["path"] == f"{API}/movements" for line in lines)
                 for name, lines in logs.items() if name.startswith("inventory")}
    assert sum(movements.values()) == movements_sent, movements
    assert min(movements.values()) >= movements_sent // 4, movements  # in turn, near half each
    # The allocation services' own calls to the inventory (snapshots, holds) went to both too.
    for name in ("inventory", "inventory-2"):
        assert any(line["path"].startswith((f"{API}/reservations", f"{API}/stock/snapshot"))
                   for line in logs[name]), name
    for name in ("allocation", "allocation-2"):
        assert any(line["path"].startswith(f"{API}/incidents") for line in logs[name]), name


def check_keys(keepers: Keepers) -> None:
    """A key sent again (in a row, or by two at once) was answered the same each time."""
    repeated = 0
    for key, answers in keepers.answers.items():
        statuses = {status for status, _ in answers}
        assert len(statuses) == 1, (key, answers)
        if len(answers) > 1:
            repeated += 1
            first, *others = [body for _, body in answers]
            for other in others:
                if statuses == {201}:
                    assert other == first, (key, answers)
                else:  # the same refusal; only its request id differs
                    assert {k: v for k, v in other.items() if k != "request_id"} == \
                        {k: v for k, v in first.items() if k != "request_id"}, (key, answers)
    assert repeated >= KEEPERS * MOVES // 8, repeated


def check_books(url: str, keepers: Keepers, planners: Planners,
                received: dict[tuple[str, str], int]) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stock = {(row.code, row.sku): row for row in conn.execute(text(
                "SELECT s.id, w.code, i.sku, s.on_hand, s.reserved, "
                "  (SELECT coalesce(sum(m.quantity), 0) FROM movements m "
                "   WHERE m.warehouse_id = s.warehouse_id AND m.item_id = s.item_id) AS ledger, "
                "  (SELECT coalesce(sum(l.on_hand), 0) FROM lots l WHERE l.stock_id = s.id) "
                "   AS lots, "
                "  (SELECT coalesce(sum(rl.quantity), 0) FROM reservation_lines rl "
                "   JOIN reservations r ON r.id = rl.reservation_id "
                "   WHERE rl.stock_id = s.id AND r.status = 'held') AS held "
                "FROM stock s JOIN warehouses w ON w.id = s.warehouse_id "
                "JOIN items i ON i.id = s.item_id"))}
            by_reference = Counter(row.reference for row in conn.execute(text(
                "SELECT reference FROM movements WHERE reference IS NOT NULL")))
            reservations = {row.id: row for row in conn.execute(text(
                "SELECT id, status, reference FROM reservations"))}
            lines = defaultdict(Counter)
            for row in conn.execute(text(
                    "SELECT rl.reservation_id, w.code, i.sku, rl.quantity "
                    "FROM reservation_lines rl JOIN stock s ON s.id = rl.stock_id "
                    "JOIN warehouses w ON w.id = s.warehouse_id "
                    "JOIN items i ON i.id = s.item_id")):
                lines[row.reservation_id][(row.code, row.sku)] += row.quantity
    finally:
        engine.dispose()

    for balance, row in stock.items():
        assert row.on_hand >= 0 and 0 <= row.reserved <= row.on_hand, (balance, row)
        assert row.on_hand == row.ledger == row.lots, (balance, row)
        assert row.reserved == row.held, (balance, row)  # reserved is what live holds hold

    # Every key that was taken is one ledger line; a refused one none.
    for key, answers in keepers.answers.items():
        assert by_reference[key] == (1 if answers[0][0] == 201 else 0), (key, answers)
    assert any(status == 409 for answers in keepers.answers.values()
               for status, _ in answers), "the hot balance never ran dry"

    # On hand is what came in less what went out, each key once; dispatched plans issued theirs.
    expected = Counter(received)
    for key, answers in keepers.answers.items():
        if answers[0][0] == 201:
            body = keepers.sent[key]
            sign = 1 if body["kind"] == "receipt" else -1
            expected[(body["warehouse"], body["item"])] += sign * body["quantity"]
    held_by_plans: set[int] = set()
    for plan in planners.plans.values():
        shipped = Counter()
        for shipment in plan["shipments"]:
            shipped[(shipment["from"], shipment["item"])] += shipment["quantity"]
        (hold,) = plan["reservations"]  # one hold per plan
        assert reservations[hold].reference == f"plan:{plan['id']}"
        assert lines[hold] == shipped, plan["id"]
        if plan["status"] == "dispatched":
            assert reservations[hold].status == "committed"
            expected.subtract(shipped)
        else:
            assert plan["status"] == "planned" and reservations[hold].status == "held"
            held_by_plans.add(hold)
    assert {balance: row.on_hand for balance, row in stock.items()} == \
        {balance: expected[balance] for balance in stock}
    # No hold twice, and none but the plans' own: every held reservation is a planned plan's.
    assert {rid for rid, row in reservations.items() if row.status == "held"} == held_by_plans
    assert all(count == 1 for count in
               Counter(row.reference for row in reservations.values()).values())
