"""A plan through HTTP at national scale (issue 12: "National scale (500,000 depots): graph
loaded under 10 s and 1.5 GB, plan under 4x one Dijkstra, a plan through HTTP under 1 s (the
snapshot must not grow with the whole network)"). bench_allocation_core.py measures the solver
in process; this measures the running suite (inventory, allocation and gateway under gunicorn,
as bench_speed.py starts them) on a national data set, every call from outside through the
gateway with a commander's token:

- the first plan after start (the allocation worker loads the road graph and reads the whole
  snapshot), the allocation workers' RSS after it, and warm-up plans until both workers are warm;
- `--plans` small plans (three villages of one county x 10 items, 50 of each, `nearest`), each
  cancelled after (untimed), a few receipts at random depots between them; median and p90, and
  the CPU each plan costs by process;
- the inventory's snapshot as the allocation service asks for it (every item, signed as the
  allocation service, directly to the inventory): a full one, one `since` it after a few
  receipts, one `since` after a warehouse edit (PATCH /warehouses/{code}); then a plan after
  that edit;
- in this process: the road graph loaded from the allocation database as a worker loads it
  (time, memory) and one scipy Dijkstra on it, for the ratio plan / Dijkstra.

The data set is `emsupply.dataset.national(--depots, with_stock=True)` (the project's national
network: four levels in China's proportions, each depot on a node of its own road network,
the seed's 22-item catalogue; 500,000 depots give about 717,000 road nodes, 2.7 million
balances and 3.1 million lots). It is written straight into the services' databases with
COPY, as the seed would leave it (balances, their lots and one receipt per lot, so that on hand
= its lots = its ledger), not through the API (hours at this size). The databases are kept as
templates (emsupply_national_seeded_<fingerprint>_<service>) so that a later run copies them.

    .venv/bin/python bench/bench_national.py [--depots 500000] [--plans 20] [--stocked-items 22]
        [--reseed] [--drop-templates] [--keep] [--json FILE]

Needs PostgreSQL (creates and drops the databases emsupply_national_*) and Redis (flushes its
db 13). The services run the code of the tree this file lies in.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench_speed import (  # noqa: E402  (the path above first)
    PACKAGES,
    PLAN_ITEMS,
    SERVICES,
    Api,
    CpuMeter,
    Suite,
    check_books,
    code_under_test,
    cpu_note,
    cpu_seconds,
    drop_templates,
    free_base,
    fresh_databases,
    has_template,
    interrupted,
    keep_as_template,
    libpq,
    load,
    pct,
    per_unit,
    port_layout,
    print_books,
    upstream_urls,
)

DB_PREFIX = "emsupply_national"
ACTOR = "emsupply-cli"  # who the seed's rows name (emsupply.suite.LocalSuite's identity)
SNAPSHOT = "/api/v1/stock/snapshot"
FAR_DATE = "2028-12-31"
AIMS = {"plan_s": 1.0, "dijkstra_ratio": 4.0, "graph_s": 10.0, "graph_gb": 1.5,
        "since_share": 0.01}


# -- the databases -------------------------------------------------------------------------------

def fingerprint(args: argparse.Namespace) -> str:
    """What the generated databases depend on: the services' migrations, the data set's code,
    this file's writers and the size asked for."""
    digest = hashlib.sha256()
    for package in PACKAGES.values():
        for path in sorted((ROOT / package / "migrations").rglob("*.py")):
            digest.update(path.read_bytes())
    digest.update((ROOT / "emsupply" / "dataset.py").read_bytes())
    for writer in (write_inventory, write_roads, stocked_skus):
        digest.update(inspect.getsource(writer).encode())
    digest.update(f"{args.depots}:{args.stocked_items}:{args.seed}".encode())
    return digest.hexdigest()


def drop_working(pg: str) -> None:
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        for name in SERVICES:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_PREFIX}_{name}" WITH (FORCE)')


# -- the data set, written with COPY -------------------------------------------------------------

def stocked_skus(skus: list[str], count: int) -> set[str]:
    """The items that keep their balances: the plan's ten first, then the catalogue's order."""
    order = [*PLAN_ITEMS, *(s for s in skus if s not in PLAN_ITEMS)]
    return set(order[:count])


def write_inventory(conn, data, stocked: set[str], now: datetime) -> dict[str, int]:
    """Items, warehouses (parents first, `path` from the prefecture down), balances with their
    levels, lots and one receipt per lot, as the seed leaves them; ids given here, sequences
    set after. No outbox rows: the seed's events would all be marked published anyway."""
    with conn.cursor() as cur:
        with cur.copy("COPY items (id, sku, name, name_zh, unit, category, unit_weight_kg, "
                      "perishable, per_person, per_person_day, type_norms) FROM STDIN") as copy:
            for k, i in enumerate(data.items, 1):
                copy.write_row((k, i["sku"], i["name"], i["name_zh"], i["unit"], i["category"],
                                i["unit_weight_kg"], i["perishable"], i["per_person"],
                                i["per_person_day"], json.dumps(i["type_norms"])))
        item_id = {i["sku"]: k for k, i in enumerate(data.items, 1)}
        wid: dict[str, int] = {}
        path: dict[str, str] = {}
        with cur.copy("COPY warehouses (id, code, name, name_zh, level, parent_id, path, status, "
                      "lon, lat, road_node, created_at, updated_at) FROM STDIN") as copy:
            for k, w in enumerate(data.warehouses, 1):
                parent = w["parent"]
                wid[w["code"]] = k
                path[w["code"]] = here = (path[parent] if parent else "/") + w["code"] + "/"
                copy.write_row((k, w["code"], w["name"], w["name_zh"], w["level"],
                                wid[parent] if parent else None, here, w["status"], w["lon"],
                                w["lat"], w["road_node"], now, now))
        del path
        on_hand: dict[tuple[str, str], int] = {}
        for s in data.stock:
            if s["item"] in stocked:
                key = (s["warehouse"], s["item"])
                on_hand[key] = on_hand.get(key, 0) + s["quantity"]
        sid: dict[tuple[str, str], int] = {}
        with cur.copy("COPY stock (id, warehouse_id, item_id, on_hand, reserved, min, target) "
                      "FROM STDIN") as copy:
            for level in data.levels:
                key = (level["warehouse"], level["item"])
                if key[1] not in stocked:
                    continue
                sid[key] = k = len(sid) + 1
                copy.write_row((k, wid[key[0]], item_id[key[1]], on_hand.get(key, 0), 0,
                                level["min"], level["target"]))
            for key, quantity in on_hand.items():  # stock without levels (none in the data set)
                if key not in sid:
                    sid[key] = k = len(sid) + 1
                    copy.write_row((k, wid[key[0]], item_id[key[1]], quantity, 0, 0, 0))
        lots = 0
        with cur.copy("COPY lots (id, stock_id, lot, expires_on, on_hand) FROM STDIN") as copy:
            for s in data.stock:
                if s["item"] in stocked:
                    lots += 1
                    copy.write_row((lots, sid[(s["warehouse"], s["item"])], s["lot"],
                                    s["expires_on"], s["quantity"]))
        after: dict[tuple[str, str], int] = {}
        lines = 0
        with cur.copy("COPY movements (id, warehouse_id, item_id, kind, quantity, balance_after, "
                      "lot, expires_on, reason, reference, actor, at) FROM STDIN") as copy:
            for s in data.stock:
                if s["item"] in stocked:
                    key = (s["warehouse"], s["item"])
                    after[key] = balance = after.get(key, 0) + s["quantity"]
                    lines += 1
                    copy.write_row((lines, wid[key[0]], item_id[key[1]], "receipt",
                                    s["quantity"], balance, s["lot"], s["expires_on"], None,
                                    "seed", ACTOR, now))
        for table, column in (("items", "id"), ("warehouses", "id"), ("stock", "id"),
                              ("lots", "id"), ("movements", "id")):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                        f"(SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)")
    return {"items": len(data.items), "warehouses": len(wid), "balances": len(sid),
            "lots": lots, "ledger lines": lines}


def write_roads(conn, table, now: datetime) -> dict[str, int]:
    """The road network as `PUT /roads` stores it (roads.replace_network), and its version 1."""
    import numpy as np

    from allocation_svc.roadtable import STATUS_NAMES

    ids = table.node_ids
    with conn.cursor() as cur:
        with cur.copy("COPY road_nodes (seq, id, lon, lat) FROM STDIN") as copy:
            for k, (node, lon, lat) in enumerate(zip(ids, table.node_lon.tolist(),
                                                     table.node_lat.tolist(), strict=True), 1):
                copy.write_row((k, node, lon, lat))
        with cur.copy("COPY road_edges (seq, id, from_node, to_node, length_km, road_class, "
                      "speed_kmh, oneway, status, speed_factor, reason) FROM STDIN") as copy:
            for k, row in enumerate(zip(
                    table.edge_ids, table.edge_from.tolist(), table.edge_to.tolist(),
                    table.length_km.tolist(), table.road_class.tolist(),
                    table.speed_kmh.tolist(), table.oneway.tolist(), table.status.tolist(),
                    table.speed_factor.tolist(), strict=True), 1):
                eid, a, b, length, cls, speed, oneway, status, factor = row
                copy.write_row((k, eid, ids[a], ids[b], length, cls,
                                None if np.isnan(speed) else speed, oneway, STATUS_NAMES[status],
                                factor, None))
        cur.execute("INSERT INTO graph_versions (version, kind, events, actor, at) "
                    "VALUES (1, 'import', NULL, %s, %s)", (ACTOR, now))
        for name in ("road_nodes", "road_edges"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{name}', 'seq'), "
                        f"(SELECT coalesce(max(seq), 0) + 1 FROM {name}), false)")
    return {"road nodes": table.node_count, "road edges": table.edge_count}


def generate(urls: dict[str, str], args: argparse.Namespace) -> dict:
    """The national data set made in memory, then COPYed into the migrated, empty databases,
    then VACUUM ANALYZE (a steady state, as autovacuum would leave it)."""
    import psycopg

    from emsupply import dataset

    timings: dict = {}
    started = time.perf_counter()
    data = dataset.national(args.depots, seed=args.seed, with_stock=True)
    timings["dataset_s"] = time.perf_counter() - started
    stocked = stocked_skus([i["sku"] for i in data.items], args.stocked_items)
    now = datetime.now(UTC)
    started = time.perf_counter()
    with psycopg.connect(libpq(urls["inventory"])) as conn:
        rows = write_inventory(conn, data, stocked, now)
    timings["inventory_copy_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with psycopg.connect(libpq(urls["allocation"])) as conn:
        rows.update(write_roads(conn, data.roads, now))
    timings["roads_copy_s"] = time.perf_counter() - started
    del data
    started = time.perf_counter()
    for name in ("inventory", "allocation"):
        with psycopg.connect(libpq(urls[name]), autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")
    timings["vacuum_s"] = time.perf_counter() - started
    timings["rows"] = rows
    return timings


# -- the suite -----------------------------------------------------------------------------------

@dataclass
class NationalSuite(Suite):
    """bench_speed's Suite on databases of our own prefix, seeded by COPY instead of the API."""

    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(
        prefix="emsupply-national-")))
    generation: dict = field(default_factory=dict)

    def prepare(self, data=None) -> None:
        """Fresh databases (copies of the templates when they match), Redis flushed, the
        services' environment, every database migrated, and generated when not copied."""
        import redis

        from emsupply import supervisor

        started = time.perf_counter()
        base = free_base(1)
        self.ports = port_layout(base, 1)
        self.fingerprint = fingerprint(self.args)
        self.cloned = not self.args.reseed and has_template(self.args.pg, self.fingerprint,
                                                            DB_PREFIX)
        self.urls = fresh_databases(self.args.pg, self.fingerprint if self.cloned else None,
                                    DB_PREFIX)
        redis.Redis.from_url(self.args.redis).flushdb()
        self.secret = secrets.token_hex(24)
        self.env = {**os.environ, "EMSUPPLY_DATA_DIR": str(self.data_dir),
                    "EMSUPPLY_SECRET": self.secret, "EMSUPPLY_PORT": str(base),
                    "EMSUPPLY_REDIS_URL": self.args.redis,
                    "EMSUPPLY_GATEWAY_SERVICES": "inventory,allocation",
                    "EMSUPPLY_RATE_LIMIT": "1000000 per minute",
                    **{f"EMSUPPLY_{n.upper()}_DB": u for n, u in self.urls.items()},
                    **upstream_urls(self.ports),
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                os.environ.get("PYTHONPATH")]))}
        if self.args.read_timeout:
            self.env["EMSUPPLY_READ_TIMEOUT"] = str(self.args.read_timeout)
        if self.args.warm_start:
            self.env["EMSUPPLY_WARM_START"] = "1"
        supervisor.prepare(self.data_dir, SERVICES, self.env)
        self.timings["databases_s"] = time.perf_counter() - started
        if self.cloned:
            return
        started = time.perf_counter()
        self.generation = generate(self.urls, self.args)
        keep_as_template(self.args.pg, self.fingerprint, DB_PREFIX)
        self.generation["total_s"] = time.perf_counter() - started


def memory(pid: int) -> tuple[float, float]:
    """(RSS now, peak RSS) of a process in MiB, from /proc (0 when gone)."""
    found = {"VmRSS": 0.0, "VmHWM": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in found:
                found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def workers_memory(suite: Suite, name: str) -> dict[int, tuple[float, float]]:
    return {pid: memory(pid) for pid in suite.workers_of(name)}


# -- the plans -----------------------------------------------------------------------------------

@dataclass
class Place:
    """What the plans and the receipts are made of, read from the inventory database."""

    sites: list[str]
    county: str
    depots: list[str]
    perishable: dict[str, bool]
    node: str


def places(suite: Suite, rng: random.Random) -> Place:
    """Three active villages of the first county with at least 30 of them (first, middle and
    last by code, as bench_speed's Liping villages), 2,000 active depots at random for the
    receipts, and which items are perishable."""
    import psycopg

    with psycopg.connect(libpq(suite.urls["inventory"])) as conn:
        county = conn.execute(
            "SELECT c.path, c.code FROM warehouses c WHERE c.level = 'county' AND "
            "(SELECT count(*) FROM warehouses v WHERE v.level = 'village' AND "
            "v.status = 'active' AND v.path LIKE c.path || '%%') >= 30 ORDER BY c.id "
            "LIMIT 1").fetchone()
        villages = [row[0] for row in conn.execute(
            "SELECT code FROM warehouses WHERE level = 'village' AND status = 'active' AND "
            "path LIKE %s ORDER BY code", (county[0] + "%",))]
        active = conn.execute("SELECT count(*) FROM warehouses WHERE status = 'active'"
                              ).fetchone()[0]
        depots = [row[0] for row in conn.execute(
            "SELECT code FROM warehouses WHERE status = 'active' AND id = ANY(%s)",
            (rng.sample(range(1, active + 1), min(active, 2_000)),))]
        perishable = dict(conn.execute("SELECT sku, perishable FROM items").fetchall())
        node = conn.execute("SELECT road_node FROM warehouses WHERE code = %s",
                            (villages[0],)).fetchone()[0]
    return Place([villages[0], villages[len(villages) // 2], villages[-1]], county[1], depots,
                 perishable, node)


def plan_request(api: Api, place: Place, quantity: int, title: str) -> tuple[int, str, dict]:
    """An incident at the three villages, and a plan's request for the ten items at each."""
    incident = api.call("POST", "/api/v1/incidents", {
        "type": "rainstorm", "level": "IV", "title": title,
        "sites": [{"id": code, "warehouse": code} for code in place.sites]})
    body = {"policy": "nearest",
            "demands": [{"site": code, "item": item, "quantity": quantity, "priority": 1 + k % 3}
                        for code in place.sites for k, item in enumerate(PLAN_ITEMS)]}
    return incident["id"], f"/api/v1/incidents/{incident['id']}/allocations", body


def one_plan(api: Api, path: str, body: dict) -> tuple[float, dict | None, str]:
    """A timed plan and its cancel (untimed): seconds, the plan (None when refused), and the
    status or refusal."""
    started = time.perf_counter()
    answer = api.session.post(api.url + path, json=body, timeout=600)
    elapsed = time.perf_counter() - started
    if answer.status_code not in (200, 201):
        with contextlib.suppress(ValueError):
            problem = answer.json()
            return elapsed, None, f"{answer.status_code} {problem.get('title')}: " \
                                  f"{problem.get('detail')}"
        return elapsed, None, f"{answer.status_code}: {answer.text[:200]!r}"
    plan = answer.json()
    api.call("POST", f"/api/v1/allocations/{plan['id']}/cancel")
    if plan["status"] != "planned":
        return elapsed, plan, f"status {plan['status']}"
    return elapsed, plan, "planned"


def cancel_leftovers(suite: Suite, api: Api) -> int:
    """Plans still held that no answer named (a plan the gateway gave up on finishes anyway)."""
    import psycopg

    with psycopg.connect(libpq(suite.urls["allocation"])) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM plans WHERE status = 'planned'")]
    for plan_id in ids:
        api.call("POST", f"/api/v1/allocations/{plan_id}/cancel", ok=(200, 201, 409))
    return len(ids)


def receipt(api: Api, place: Place, rng: random.Random, tag: str) -> None:
    """A keeper's receipt of 1 of a plan item at a random depot."""
    item = rng.choice(PLAN_ITEMS)
    body = {"warehouse": rng.choice(place.depots), "item": item, "kind": "receipt",
            "quantity": 1, "reference": f"national-{tag}"}
    if place.perishable.get(item):
        body["expires_on"] = FAR_DATE
    api.call("POST", "/api/v1/movements", body)


def warmed(suite: Suite, workers: int, timeout_s: float = 600.0) -> float:
    """Wait until every allocation worker has said it is warm (EMSUPPLY_WARM_START); the
    seconds waited."""
    started = time.monotonic()
    log = suite.data_dir / "logs" / "allocation.log"
    while time.monotonic() - started < timeout_s:
        text = log.read_text(errors="replace") if log.exists() else ""
        if text.count("warm start: ready") >= workers:
            break
        if "warm start: gave up" in text:
            raise RuntimeError("an allocation worker gave up warming; see " + str(log))
        time.sleep(0.5)
    return time.monotonic() - started


def quiet(suite: Suite, timeout_s: float = 300.0) -> float:
    """Wait until the inventory and allocation workers are idle (a request the gateway or the
    allocation gave up on goes on in its worker); the seconds waited."""
    pids = suite.workers_of("inventory") + suite.workers_of("allocation")
    started = time.monotonic()
    before = cpu_seconds(pids)
    while time.monotonic() - started < timeout_s:
        time.sleep(1.0)
        now = cpu_seconds(pids)
        if now - before < 0.05:
            break
        before = now
    return time.monotonic() - started


def first_plans(suite: Suite, api: Api, place: Place, args) -> dict:
    """The first plan after start, then warm-up plans until every allocation worker has the
    graph (its RSS grew by half of what the first plan's worker grew) or `--max-warmups`, or
    until two plans in a row failed. A new connection each time (a pause past gunicorn's 2 s
    keep-alive) lets the other worker take it. After a failure, the workers are let finish
    what the callers gave up on before the next plan."""
    before = workers_memory(suite, "allocation")
    base = {pid: rss for pid, (rss, _) in before.items()}
    incident, path, body = plan_request(api, place, args.plan_quantity, "national: first plan")
    tries = []
    elapsed, plan, status = one_plan(api, path, body)
    tries.append({"s": elapsed, "status": status,
                  "busy_after_s": quiet(suite) if status != "planned" else 0.0})
    after = workers_memory(suite, "allocation")
    grown = max(rss - base.get(pid, rss) for pid, (rss, _) in after.items())
    served = max(after, key=lambda pid: after[pid][0] - base.get(pid, 0))
    out = {"first_s": elapsed, "first_status": status, "first_memory": after,
           "first_worker": served, "first_grown_mib": grown,
           "inventory_memory": workers_memory(suite, "inventory"),
           "first_shipments": len(plan["shipments"]) if plan else 0}
    warm = {pid for pid, (rss, _) in after.items() if rss - base.get(pid, rss) > grown / 2}
    while len(tries) < 1 + args.max_warmups and (
            len(warm) < len(after) or tries[-1]["status"] != "planned"):
        if len(tries) >= 2 and all(t["status"] != "planned" for t in tries[-2:]):
            break  # it does not work: no more orphaned snapshots for the inventory
        time.sleep(2.5)
        api.session.close()
        elapsed, plan, status = one_plan(api, path, body)
        tries.append({"s": elapsed, "status": status,
                      "busy_after_s": quiet(suite) if status != "planned" else 0.0})
        now = workers_memory(suite, "allocation")
        warm = {pid for pid, (rss, _) in now.items() if rss - base.get(pid, rss) > grown / 2}
    out["tries"] = tries
    out["planned"] = sum(t["status"] == "planned" for t in tries)
    out["warm_workers"] = len(warm)
    out["workers"] = len(after)
    out["memory"] = workers_memory(suite, "allocation")
    out["leftovers"] = cancel_leftovers(suite, api)
    out["incident"] = incident
    return out


def small_plans(suite: Suite, api: Api, admin: Api, place: Place, args,
                rng: random.Random) -> dict:
    """`--plans` timed plans, `--receipts` receipts between them, and after them the
    inventory's snapshot `since` the last one (as the allocation service would ask)."""
    _, path, body = plan_request(api, place, args.plan_quantity, "national: small plans")
    direct = Direct(suite)
    version = direct.snapshot()["version"]
    times, shipments, failures, since_bytes, since_s = [], [], [], [], []
    used: dict[str, float] = {}
    for n in range(args.plans):
        for k in range(args.receipts):
            receipt(admin, place, rng, f"{n}-{k}")
        meter = CpuMeter(suite, DB_PREFIX)
        elapsed, plan, status = one_plan(api, path, body)
        for name, seconds in meter.used().items():
            used[name] = used.get(name, 0.0) + seconds
        if plan is None or status != "planned":
            failures.append(status)
            continue
        times.append(elapsed)
        shipments.append(len(plan["shipments"]))
        answer = direct.snapshot(version)
        version = answer["version"]
        since_bytes.append(direct.last_bytes)
        since_s.append(direct.last_s)
    if not times:
        raise RuntimeError(f"no small plan was planned: {failures[:3]}")
    return {"median_s": statistics.median(times), "p90_s": pct(times, 90), "min_s": min(times),
            "max_s": max(times), "n": len(times), "failures": failures,
            "shipments": statistics.median(shipments), "load": load(),
            "cpu": per_unit(used, args.plans), "since_bytes": statistics.median(since_bytes),
            "since_s": statistics.median(since_s), "lines": len(body["demands"])}


class Direct:
    """Calls to the inventory itself, signed as the allocation service signs its own."""

    def __init__(self, suite: Suite):
        import requests

        from allocation_svc.inventory import SERVICE

        self.url = f"http://127.0.0.1:{suite.ports['inventory'][0]}"
        self.secret, self.identity = suite.secret, SERVICE
        self.session = requests.Session()
        self.last_bytes, self.last_s = 0, 0.0

    def snapshot(self, since: str | None = None) -> dict:
        from urllib.parse import urlencode

        from shared import auth

        path = SNAPSHOT + (f"?{urlencode({'since': since})}" if since else "")
        headers = auth.sign(self.secret, self.identity, "GET", path)
        started = time.perf_counter()
        answer = self.session.get(self.url + path, headers=headers, timeout=600)
        body = answer.content
        self.last_s = time.perf_counter() - started
        self.last_bytes = len(body)
        if answer.status_code != 200:
            raise RuntimeError(f"GET {path[:80]} -> {answer.status_code}: {body[:300]!r}")
        return json.loads(body)


def snapshots(suite: Suite, api: Api, admin: Api, place: Place, args, rng: random.Random,
              plans_work: bool) -> dict:
    """A full snapshot, one `since` it after a few receipts, one `since` after a warehouse
    edit; each's bytes, time and rows; then a plan after that edit (its allocation worker
    reads the same `since` answer)."""
    direct = Direct(suite)
    out: dict = {}
    full = direct.snapshot()
    out["full"] = {"bytes": direct.last_bytes, "s": direct.last_s,
                   "balances": len(full["stock"]["warehouse"]),
                   "warehouses": len(full["warehouses"]["code"])}
    out["inventory_memory"] = workers_memory(suite, "inventory")
    version = full["version"]
    del full
    for k in range(args.receipts):
        receipt(admin, place, rng, f"snap-{k}")
    moved = direct.snapshot(version)
    out["since_moves"] = {"bytes": direct.last_bytes, "s": direct.last_s,
                          "balances": len(moved["stock"]["warehouse"]),
                          "warehouses": len((moved["warehouses"] or {}).get("code", [])),
                          "receipts": args.receipts}
    version = moved["version"]
    edited = place.depots[0]
    admin.call("PATCH", f"/api/v1/warehouses/{edited}",
               {"name": f"National bench depot {edited} (renamed)"})
    after_edit = direct.snapshot(version)
    out["since_edit"] = {"bytes": direct.last_bytes, "s": direct.last_s,
                         "balances": len(after_edit["stock"]["warehouse"]),
                         "warehouses": len((after_edit["warehouses"] or {}).get("code", [])),
                         "edited": edited}
    times: list[dict] = []
    out["plans_after_edit"] = times
    if not plans_work:
        return out
    _, path, body = plan_request(api, place, args.plan_quantity, "national: after an edit")
    for _ in range(2):  # each worker, if the calls land on both
        elapsed, plan, status = one_plan(api, path, body)
        times.append({"s": elapsed, "status": status})
        api.session.close()
        time.sleep(2.5)
    return out


# -- in this process: the snapshot's parts, the graph and one Dijkstra ---------------------------

def snapshot_here(suite: Suite) -> dict:
    """Where a full snapshot's time goes, in this process on the inventory database: the
    balances' query alone (every item, as the allocation asks), the warehouses' query, the
    whole `snapshot.snapshot` (both, and the columns), the answer's schema dump and JSON."""
    from inventory_svc import snapshot
    from inventory_svc.api.snapshot import SnapshotOut
    from shared.db import Database

    out: dict = {}
    db = Database(suite.urls["inventory"])
    try:
        with db.reading() as session:
            started = time.perf_counter()
            out["balances"] = len(session.execute(snapshot._balances(False), snapshot
                                                  .balances_bound(datetime.now(UTC), None)).all())
            out["balances_query_s"] = time.perf_counter() - started
            started = time.perf_counter()
            out["warehouses"] = len(snapshot._warehouses(session)["id"])
            out["warehouses_query_s"] = time.perf_counter() - started
        with db.reading() as session:
            started = time.perf_counter()
            answer = snapshot.snapshot(session, None)
            out["snapshot_s"] = time.perf_counter() - started
    finally:
        db.dispose()
    started = time.perf_counter()
    dumped = SnapshotOut().dump(answer)
    out["dump_s"] = time.perf_counter() - started
    started = time.perf_counter()
    out["json_bytes"] = len(json.dumps(dumped))
    out["json_s"] = time.perf_counter() - started
    return out


def graph_here(suite: Suite, place: Place, repeat: int) -> dict:
    """The road graph loaded from the allocation database as a worker loads it (GraphCache),
    its time and the memory it took in this process, then one scipy Dijkstra from the first
    site's node (median of `repeat`)."""
    import gc

    from scipy.sparse.csgraph import dijkstra

    from allocation_svc.roads import GraphCache
    from shared.db import Database

    gc.collect()
    rss_before, _ = memory(os.getpid())
    db = Database(suite.urls["allocation"])
    try:
        started = time.perf_counter()
        with db.reading() as session:
            graph = GraphCache().current(session)
        load_s = time.perf_counter() - started
    finally:
        db.dispose()
    rss_after, peak = memory(os.getpid())
    site = graph.node_index(place.node)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        dijkstra(graph.csr, indices=site)
        times.append(time.perf_counter() - started)
    return {"load_s": load_s, "grown_mib": rss_after - rss_before, "peak_mib": peak,
            "dijkstra_s": statistics.median(times), "nodes": graph.table.node_count,
            "edges": graph.table.edge_count}


# -- report --------------------------------------------------------------------------------------

def kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:,.1f} MiB"


def mib(n: float) -> str:
    return f"{n:,.0f} MiB"


def report(figures: dict, suite: NationalSuite) -> None:
    rows = []

    def row(name, value, aim="", met=None, note=""):
        rows.append((name, value, aim, "" if met is None else ("yes" if met else "NO"), note))

    g = suite.generation
    if g:
        row("data set generated and COPYed", f"{g['total_s']:.0f} s", "", None,
            f"national() {g['dataset_s']:.0f} s, inventory COPY {g['inventory_copy_s']:.0f} s, "
            f"roads COPY {g['roads_copy_s']:.0f} s, VACUUM ANALYZE {g['vacuum_s']:.0f} s; "
            + ", ".join(f"{v:,} {k}" for k, v in g["rows"].items()))
    else:
        row("databases copied from the templates", f"{suite.timings['databases_s']:.1f} s")
    f = figures.get("first")
    if f:
        rss = f["first_memory"][f["first_worker"]]
        if "warm_s" in figures:
            row("warm start: every allocation worker ready", f"{figures['warm_s']:.1f} s", "",
                None, "EMSUPPLY_WARM_START=1: each worker loads the graph and reads the whole "
                "snapshot when it starts; counted from the sites' choice, just after start")
        row("first plan after start", f"{f['first_s']:.2f} s", "", None,
            f"{f['first_status'][:120]}; "
            + ("the workers warm already; " if "warm_s" in figures else
               "that worker loads the graph and reads the whole snapshot; ")
            + f"{f['first_shipments']} shipments")
        row("  its allocation worker's RSS (peak)", mib(rss[0]), "< 1.5 GB",
            rss[1] < AIMS["graph_gb"] * 1024,
            f"peak {mib(rss[1])}, grew {mib(f['first_grown_mib'])} with that plan")
        if f["tries"][0]["busy_after_s"]:
            row("  the services busy after it for", f"{f['tries'][0]['busy_after_s']:.0f} s",
                "", None, "the request the callers gave up on, still worked on")
        tries = "; ".join(f"{t['s']:.2f} s ({t['status'][:60]})"
                          + (f", busy {t['busy_after_s']:.0f} s after" if t["busy_after_s"]
                             else "") for t in f["tries"][1:])
        row("  warm-up plans", f"{len(f['tries']) - 1}", "", None,
            f"{f['planned']} of {len(f['tries'])} plans planned, {f['warm_workers']}/"
            f"{f['workers']} allocation workers warm; {tries or 'none needed'}; "
            f"{f['leftovers']} plan(s) left held, cancelled")
        mem = "; ".join(f"pid {pid} {mib(r)} (peak {mib(h)})" for pid, (r, h) in
                        f["memory"].items())
        row("  allocation workers after warm-up", "", "", None, mem)
        inv = "; ".join(f"pid {pid} {mib(r)} (peak {mib(h)})" for pid, (r, h) in
                        f["inventory_memory"].items())
        row("  inventory workers after the first plan", "", "", None, inv)
    p = figures.get("plans")
    if not p:
        row("small plan through the gateway, median", "not measured", "< 1 s", False,
            "no plan was planned (see the first plan)")
    if p:
        row("small plan through the gateway, median", f"{p['median_s'] * 1e3:.0f} ms", "< 1 s",
            p["median_s"] < AIMS["plan_s"],
            f"p90 {p['p90_s'] * 1e3:.0f} ms, min {p['min_s'] * 1e3:.0f}, max "
            f"{p['max_s'] * 1e3:.0f}, n={p['n']} ({len(p['failures'])} refused: "
            f"{p['failures'][:2]}), {p['shipments']:.0f} shipments, {p['lines']} lines, "
            f"load {p['load']}; {cpu_note(p['cpu'], 'plan and its cancel')}")
    h = figures.get("graph")
    if h:
        row("graph loaded in this process (GraphCache)", f"{h['load_s']:.1f} s", "< 10 s",
            h["load_s"] < AIMS["graph_s"],
            f"{h['nodes']:,} nodes, {h['edges']:,} edges; +{mib(h['grown_mib'])} RSS, this "
            f"process's peak {mib(h['peak_mib'])}")
        row("one scipy Dijkstra (same graph)", f"{h['dijkstra_s'] * 1e3:.1f} ms")
        if p:
            ratio = p["median_s"] / h["dijkstra_s"]
            row("  plan through HTTP / Dijkstra", f"{ratio:.1f}x", "(solver: <= 4x)", None,
                "the aim is the solver's (bench_allocation_core.py); this is the whole request")
    s = figures.get("snapshots")
    if s:
        full = s["full"]
        row("snapshot, full (every item, as the allocation asks)", kib(full["bytes"]), "", None,
            f"{full['s']:.2f} s, {full['warehouses']:,} warehouses, {full['balances']:,} "
            "balances")
        if p:
            row("  `since`, after each plan and its receipts, median", kib(p["since_bytes"]),
                "", None, f"{p['since_s'] * 1e3:.0f} ms")
        for key, label in (("since_moves", f"after {s['since_moves']['receipts']} receipts"),
                           ("since_edit", "after one warehouse edit")):
            one = s[key]
            share = one["bytes"] / full["bytes"]
            row(f"  `since`, {label}", kib(one["bytes"]), "not the network's size",
                share < AIMS["since_share"],
                f"{share:.1%} of the full one, {one['s'] * 1e3:.0f} ms, {one['balances']:,} "
                f"balances, {one['warehouses']:,} warehouses")
        inv = "; ".join(f"pid {pid} {mib(r)} (peak {mib(h)})" for pid, (r, h) in
                        s["inventory_memory"].items())
        row("  inventory workers after a full snapshot", "", "", None, inv)
        here = figures.get("snapshot_here")
        if here:
            row("  in this process: snapshot.snapshot()", f"{here['snapshot_s']:.1f} s", "",
                None, f"of which the balances' query alone {here['balances_query_s']:.1f} s "
                f"({here['balances']:,} rows), the warehouses' {here['warehouses_query_s']:.1f} "
                f"s ({here['warehouses']:,}); then the schema dump {here['dump_s']:.1f} s, JSON "
                f"{here['json_s']:.1f} s ({kib(here['json_bytes'])})")
        if s["plans_after_edit"]:
            after = ", ".join(f"{t['s'] * 1e3:.0f} ms ({t['status'][:40]})"
                              for t in s["plans_after_edit"])
            row("plan after a warehouse edit", after, "< 1 s",
                all(t["s"] < AIMS["plan_s"] for t in s["plans_after_edit"]),
                "the allocation's next `since` brings the edited warehouse; its worker then "
                "finds the warehouses' road nodes and places again")
    width = [max(len(str(r[i])) for r in [*rows, ("figure", "value", "aim", "met", "")])
             for i in range(4)]
    print(f"\n{'figure':<{width[0]}}  {'value':>{width[1]}}  {'aim':<{width[2]}}  "
          f"{'met':<{width[3]}}  notes")
    for name, value, aim, met, note in rows:
        print(f"{name:<{width[0]}}  {value:>{width[1]}}  {aim:<{width[2]}}  "
              f"{met:<{width[3]}}  {note}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depots", type=int, default=500_000,
                        help="warehouses of the national data set")
    parser.add_argument("--stocked-items", type=int, default=22,
                        help="items that keep their balances (the plan's ten first; the "
                             "catalogue has 22, all by default)")
    parser.add_argument("--seed", type=int, default=2023, help="of the data set")
    parser.add_argument("--plans", type=int, default=20, help="timed small plans")
    parser.add_argument("--plan-quantity", type=int, default=50,
                        help="of each item at each of the three villages")
    parser.add_argument("--receipts", type=int, default=3,
                        help="receipts at random depots before each plan (and before the "
                             "`since` snapshot)")
    parser.add_argument("--max-warmups", type=int, default=8,
                        help="plans after the first, until both allocation workers are warm")
    parser.add_argument("--dijkstras", type=int, default=5)
    parser.add_argument("--no-breakdown", action="store_true",
                        help="skip the full snapshot's parts timed in this process")
    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn workers per service (emsupply up's default)")
    parser.add_argument("--read-timeout", type=float, default=0,
                        help="EMSUPPLY_READ_TIMEOUT of the gateway (seconds; 0 keeps its 15 s)")
    parser.add_argument("--warm-start", action="store_true",
                        help="EMSUPPLY_WARM_START=1: the allocation workers read everything "
                        "when they start; the first plan is sent once they all say so")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                        help="a PostgreSQL server (libpq URL without database) whose user may "
                             "create databases")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13",
                        help="Redis URL; its database is flushed first")
    parser.add_argument("--reseed", action="store_true",
                        help="generate afresh even when a template matches")
    parser.add_argument("--drop-templates", action="store_true",
                        help="drop every kept template of this bench and exit")
    parser.add_argument("--keep", action="store_true",
                        help="leave the services running until Ctrl-C, then the databases and "
                             "the data directory (for a look after)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    # what bench_speed's Suite reads of its arguments
    args.instances, args.keepers, args.parts, args.no_relay = 1, 0, [], False
    args.rate_limit = "1000000 per minute"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.drop_templates:
        print("dropped:", ", ".join(drop_templates(args.pg, DB_PREFIX)) or "nothing")
        return 0
    command = shlex.join([".venv/bin/python", "bench/bench_national.py", *sys.argv[1:]])
    began = time.perf_counter()
    print(f"command: {command}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load()} at the start")
    print(f"code: {code_under_test()}", flush=True)
    suite = NationalSuite(args)
    figures: dict = {}
    rng = random.Random(args.seed)
    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        suite.prepare()
        if suite.generation:
            g = suite.generation
            print(f"generated in {g['total_s']:.0f} s: {g['rows']}", flush=True)
            started = time.perf_counter()
            print_books(check_books(suite))  # the generated books hold, as the seed's would
            print(f"  (checked in {time.perf_counter() - started:.0f} s)", flush=True)
        suite.start()
        suite.make_tokens()
        print(f"setup: databases {suite.timings['databases_s']:.1f} s "
              f"({'copied from the templates' if suite.cloned else 'generated'}), started in "
              f"{suite.timings['start_s']:.1f} s: gateway {suite.gateway}, {args.workers} "
              "gthread workers x 4 threads per service, relays on", flush=True)
        api, admin = suite.api("commander"), suite.api("admin")
        place = places(suite, rng)
        print(f"sites: {', '.join(place.sites)} (county {place.county}); load {load()}",
              flush=True)
        if args.warm_start:
            figures["warm_s"] = warmed(suite, args.workers)
            print(f"  warm start: every allocation worker ready {figures['warm_s']:.1f} s "
                  f"after the sites were chosen; load {load()}", flush=True)
        figures["first"] = first_plans(suite, api, place, args)
        print(f"  first plan: {figures['first']['first_s']:.2f} s "
              f"({figures['first']['first_status'][:80]}), "
              f"{len(figures['first']['tries']) - 1} warm-up(s); load {load()}", flush=True)
        works = figures["first"]["planned"] > 0
        if works:
            figures["plans"] = small_plans(suite, api, admin, place, args, rng)
            print(f"  plans: median {figures['plans']['median_s'] * 1e3:.0f} ms; load "
                  f"{load()}", flush=True)
        else:
            print("  plans: not measured, no plan was planned", flush=True)
        figures["snapshots"] = snapshots(suite, api, admin, place, args, rng, works)
        print(f"  snapshots: full {figures['snapshots']['full']['s']:.1f} s; load {load()}",
              flush=True)
        figures["graph"] = graph_here(suite, place, args.dijkstras)  # first: a clean RSS
        if not args.no_breakdown:
            figures["snapshot_here"] = snapshot_here(suite)
            print(f"  the snapshot in this process: done; load {load()}", flush=True)
        report(figures, suite)
        print(f"\nwhole run {time.perf_counter() - began:.0f} s; load average {load()} at the end")
        print(f"command: {command}")
        if args.json:
            args.json.write_text(json.dumps({"generation": suite.generation,
                                             "timings": suite.timings, **figures},
                                            indent=1, default=str))
        if args.keep:
            print(f"kept running: gateway {suite.gateway}, tokens {json.dumps(suite.tokens)}; "
                  "Ctrl-C stops", flush=True)
            while True:
                time.sleep(3600)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        suite.stop()
        if not args.keep:
            with contextlib.suppress(Exception):
                drop_working(args.pg)
            shutil.rmtree(suite.data_dir, ignore_errors=True)
        else:
            print(f"kept: databases {DB_PREFIX}_*, data directory {suite.data_dir}")


if __name__ == "__main__":
    raise SystemExit(main())
