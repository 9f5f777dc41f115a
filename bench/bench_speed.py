"""Speed where users wait (issue 12): the suite as `emsupply up` runs it (inventory, allocation
and gateway under gunicorn, gthread workers; the outbox relays in a process of their own) on
fresh PostgreSQL databases and Redis, seeded with the Qiandongnan data set, measured from outside
through the gateway, each figure beside its baseline in the same run:

- plan:   a small plan (3 villages of one county x 10 items, `nearest`) through the gateway,
          median and p90, against the solver's own time for the same request in this process;
          each plan is then cancelled, and the cancel's median shown beside it;
- storm:  the seed's storm plan (three Rongjiang townships, 9,690 people, 3 days, backbone);
- hot:    16 keepers posting movements on ONE balance (QDN, TENT) through the gateway, against
          a bare `UPDATE stock ... RETURNING` loop on the same row from 16 connections;
- spread: 16 keepers over many balances through the gateway, without and with Idempotency-Key;
- hop:    the same read directly to the inventory service (signed as the gateway signs), through
          the gateway, and through a bare WSGI passthrough (no Flask) under the same gunicorn
          settings, alternating rounds;

then the books (every balance equals its ledger and its lots, holds add up, nothing negative),
and one table of figures with the aims beside them. `--profile DIR` adds profiled passes of the
plan and hot parts (py-spy on every gunicorn worker, after the measured parts so the figures
are not slowed by it) and prints where the time goes.

    .venv/bin/python bench/bench_speed.py [--only plan,storm,hot,spread,hop] [--seconds 10]
        [--plans 30] [--storms 5] [--profile DIR]

Needs PostgreSQL (creates and drops the databases emsupply_speed_*) and Redis (flushes its
db 14). Seeding takes about 3 minutes on PostgreSQL, so the seeded databases are kept as
templates (emsupply_speed_seeded_<fingerprint>_<service>, the fingerprint being the services'
migrations, the seed's code and the data set) and copied by later runs in seconds; `--reseed`
seeds anyway, `--drop-templates` drops them. The gateway's rate limit per token is raised
(`--rate-limit`), else 16 keepers could not pass 320 movements/s. The services run the code of
the tree this file lies in (copy it into another tree to measure that one).

`--instances N` starts N inventory and N allocation services and hands their URLs to the
gateway and the allocation service as comma-separated lists (EMSUPPLY_INVENTORY_URL,
EMSUPPLY_ALLOCATION_URL): `upstream_urls` is the one place that decides them.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

PARTS = ("plan", "storm", "hot", "spread", "hop")
DB_PREFIX = "emsupply_speed"
SERVICES = ("inventory", "allocation", "gateway")
PACKAGES = {"inventory": "inventory_svc", "allocation": "allocation_svc", "gateway": "gateway"}
# The plan's items: the ten of bench_allocation.py (tents, quilts, coats, beds, tarpaulins,
# water, rice, instant food, raincoats, first-aid kits).
PLAN_ITEMS = ["TENT", "QUILT", "COTTON-COAT", "FOLDING-BED", "TARPAULIN", "WATER-550", "RICE",
              "INSTANT-FOOD", "RAINCOAT", "FIRST-AID-KIT"]
HOT = ("QDN", "TENT")
READ_PATH = "/api/v1/stock?warehouse=QDN&item=TENT"
FAR_DATE = "2028-12-31"  # the expiry date of a perishable receipt: far ahead
AIMS = {
    "plan_ms": 60.0, "plan_solver_ratio": 10.0, "storm_ms": 1000.0, "hot_rate": 400.0,
    "hot_bare_ratio": 0.5, "spread_rate": 800.0, "keys_ratio": 0.8, "hop_ms": 0.8,
}


# -- the suite ---------------------------------------------------------------------------------

def upstream_urls(ports: dict[str, list[int]]) -> dict[str, str]:
    """What the gateway and the allocation service are told of the services behind them: the
    one place to change for several instances (comma-separated lists, today's config reads one
    URL each)."""
    return {f"EMSUPPLY_{name.upper()}_URL": ",".join(f"http://127.0.0.1:{p}" for p in ports[name])
            for name in ("inventory", "allocation")}


def port_layout(base: int, instances: int) -> dict[str, list[int]]:
    """The gateway on `base`, inventory k on base+1+10k, allocation k on base+2+10k, the bare
    passthrough on base+5."""
    return {"gateway": [base],
            "inventory": [base + 1 + 10 * k for k in range(instances)],
            "allocation": [base + 2 + 10 * k for k in range(instances)],
            "passthrough": [base + 5]}


def free_base(instances: int, start: int = 21_000) -> int:
    for base in range(start, 60_000, 100):
        wanted = [p for ports in port_layout(base, instances).values() for p in ports]
        try:
            for port in wanted:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports")


def fresh_databases(pg: str, fingerprint: str | None = None,
                    prefix: str = DB_PREFIX) -> dict[str, str]:
    """Drop and create <prefix>_<service> (empty, or a copy of the seeded template of
    `fingerprint`); their SQLAlchemy URLs. `prefix`: another bench's databases."""
    import psycopg

    urls = {}
    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        for name in SERVICES:
            db = f"{prefix}_{name}"
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            copy = (f' TEMPLATE "{template_name(fingerprint, name, prefix)}"' if fingerprint
                    else "")
            conn.execute(f'CREATE DATABASE "{db}"{copy}')
            urls[name] = f"{pg.replace('postgresql://', 'postgresql+psycopg://', 1)}/{db}"
    return urls


def template_name(fingerprint: str, service: str, prefix: str = DB_PREFIX) -> str:
    return f"{prefix}_seeded_{fingerprint[:12]}_{service}"


def seed_fingerprint(data) -> str:
    """What the seeded databases depend on: every migration of the three services, the seed's
    code and the data set's rows. Templates are kept per fingerprint: a tree with another
    migration is seeded again (once), and switching back finds its own."""
    import hashlib

    from allocation_svc.geojson import roads_geojson

    digest = hashlib.sha256()
    for package in PACKAGES.values():
        for path in sorted((ROOT / package / "migrations").rglob("*.py")):
            digest.update(path.read_bytes())
    digest.update((ROOT / "emsupply" / "seed.py").read_bytes())
    digest.update(json.dumps([data.warehouses, data.items, data.stock, data.levels,
                              roads_geojson(data.roads)], sort_keys=True, default=str).encode())
    return digest.hexdigest()


def templates(pg: str, prefix: str = DB_PREFIX) -> list[str]:
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        return [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname",
            (f"{prefix}_seeded_%",))]


def has_template(pg: str, fingerprint: str, prefix: str = DB_PREFIX) -> bool:
    found = set(templates(pg, prefix))
    return all(template_name(fingerprint, name, prefix) in found for name in SERVICES)


def keep_as_template(pg: str, fingerprint: str, prefix: str = DB_PREFIX) -> None:
    """Copy the freshly seeded databases to the templates of their fingerprint."""
    import psycopg

    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        for name in SERVICES:
            target = template_name(fingerprint, name, prefix)
            conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{target}" TEMPLATE "{prefix}_{name}"')


def drop_templates(pg: str, prefix: str = DB_PREFIX) -> list[str]:
    import psycopg

    gone = templates(pg, prefix)
    with psycopg.connect(f"{pg}/postgres", autocommit=True) as conn:
        for name in gone:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return gone


def mark_outbox_published(urls: dict[str, str]) -> int:
    """The seed's own events count as shipped: a relay starting on a fresh seed would
    otherwise ship ~20,000 of them while the first parts are measured."""
    import psycopg

    shipped = 0
    for name in ("inventory", "allocation"):
        with psycopg.connect(libpq(urls[name])) as conn:
            shipped += conn.execute("UPDATE outbox SET published_at = now() "
                                    "WHERE published_at IS NULL").rowcount
    return shipped


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            found.append(int(entry))
    return sorted(found)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by `pids` (those gone count 0)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used during a part: by each service's gunicorn workers, by the PostgreSQL backends
    of the bench's databases (`prefix`), by the relay process and by this process (the
    clients)."""

    def __init__(self, suite: Suite, prefix: str = DB_PREFIX):
        import psycopg

        with psycopg.connect(libpq(suite.urls["inventory"])) as conn:
            backends = [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname LIKE %s AND pid <> "
                "pg_backend_pid()", (f"{prefix}_%",))]
        self.groups = {name: suite.workers_of(name) for name in SERVICES}
        self.groups["postgres"] = backends
        self.groups["relay"] = [s.process.pid for s in suite.running if s.name == "worker"]
        self.groups["passthrough"] = suite.workers_of("passthrough")
        self.before = {name: cpu_seconds(pids) for name, pids in self.groups.items()}
        self.client = time.process_time()

    def used(self) -> dict[str, float]:
        """CPU seconds by each group since the meter was made."""
        used = {name: cpu_seconds(pids) - self.before[name] for name, pids in self.groups.items()}
        used["client"] = time.process_time() - self.client
        return used

    def per(self, units: int) -> dict[str, float]:
        """Milliseconds of CPU per unit (a plan, a movement) by each group and in all."""
        return per_unit(self.used(), units)


def per_unit(used: dict[str, float], units: int) -> dict[str, float]:
    out = {name: 1000 * seconds / max(1, units) for name, seconds in used.items()}
    out["total"] = sum(out.values())
    return out


def movements_note(m: dict) -> str:
    """Latency, statuses, load and CPU of a run of keepers' movements."""
    return (f"p50 {m['p50_s'] * 1e3:.1f} ms, p99 {m['p99_s'] * 1e3:.1f} ms, "
            f"statuses {m['statuses']}, load {m['load']}; {cpu_note(m['cpu'], 'movement')}")


def cpu_note(cpu: dict[str, float], unit: str) -> str:
    parts = ", ".join(f"{name} {cpu[name]:.2f}" for name in
                      ("gateway", "passthrough", "inventory", "allocation", "postgres", "relay",
                       "client")
                      if cpu.get(name, 0) >= 0.005)
    return f"CPU {cpu['total']:.2f} ms per {unit} ({parts})"


def code_under_test() -> str:
    """Which tree the services run: its path, and its commit and uncommitted changes if git
    knows it."""
    import inventory_svc

    where = Path(inventory_svc.__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(where), "log", "-1", "--format=%h %s"],
                              capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--",
                                  *PACKAGES.values(), "shared", "emsupply"],
                                 capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return f"{where} (not a git work tree)"
    return (f"{where} at {head[:60]}, {len(changed)} uncommitted change(s) in the services"
            if changed else f"{where} at {head[:60]}, no uncommitted change in the services")


@dataclass
class Suite:
    args: argparse.Namespace
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="emsupply-speed-")))
    env: dict = field(default_factory=dict)
    ports: dict = field(default_factory=dict)
    urls: dict = field(default_factory=dict)
    running: list = field(default_factory=list)
    tokens: dict = field(default_factory=dict)
    identities: dict = field(default_factory=dict)
    secret: str = ""
    timings: dict = field(default_factory=dict)
    fingerprint: str = ""
    cloned: bool = False

    # setup
    def prepare(self, data) -> None:
        """Fresh databases (a copy of the seeded templates when they match this code and data
        set), Redis flushed, the environment of the services, every database migrated."""
        from emsupply import supervisor

        started = time.perf_counter()
        base = free_base(self.args.instances)
        self.ports = port_layout(base, self.args.instances)
        self.fingerprint = seed_fingerprint(data)
        self.cloned = not self.args.reseed and has_template(self.args.pg, self.fingerprint)
        self.urls = fresh_databases(self.args.pg, self.fingerprint if self.cloned else None)
        import redis

        redis.Redis.from_url(self.args.redis).flushdb()
        self.secret = secrets.token_hex(24)
        self.env = {**os.environ, "EMSUPPLY_DATA_DIR": str(self.data_dir),
                    "EMSUPPLY_SECRET": self.secret, "EMSUPPLY_PORT": str(base),
                    "EMSUPPLY_REDIS_URL": self.args.redis,
                    "EMSUPPLY_GATEWAY_SERVICES": "inventory,allocation",
                    **{f"EMSUPPLY_{n.upper()}_DB": u for n, u in self.urls.items()},
                    **upstream_urls(self.ports),
                    # the services run the code of the tree this file is in, whatever the venv
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                os.environ.get("PYTHONPATH")]))}
        if self.args.rate_limit:
            self.env["EMSUPPLY_RATE_LIMIT"] = self.args.rate_limit
        supervisor.prepare(self.data_dir, SERVICES, self.env)  # checks and migrates
        self.timings["databases_s"] = time.perf_counter() - started

    def seed(self, data) -> None:
        """The data set in this process through the services' own apps (LocalSuite) on the
        real databases, the fastest way that passes every row through the API's checks (about
        3 minutes on PostgreSQL on 2 cores), then kept as templates that later runs copy in
        seconds. The seed's events are marked shipped either way."""
        if self.cloned:
            self.timings["seed_rows"] = "copied from the seeded templates"
            self.timings["seed_s"] = 0.0
            return
        from emsupply import seed as seeding
        from emsupply.suite import LocalSuite

        saved = dict(os.environ)
        os.environ.update(self.env)
        started = time.perf_counter()
        try:
            local = LocalSuite(self.data_dir)
            try:
                self.timings["seed_rows"] = seeding.seed(local, data)
            finally:
                local.close()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        mark_outbox_published(self.urls)
        keep_as_template(self.args.pg, self.fingerprint)
        self.timings["seed_s"] = time.perf_counter() - started

    def start(self) -> None:
        from emsupply import supervisor

        started = time.perf_counter()
        for name in ("inventory", "allocation", "gateway"):
            for k, port in enumerate(self.ports[name]):
                label = name if len(self.ports[name]) == 1 else f"{name}-{k + 1}"
                service = supervisor.Service(label, PACKAGES[name], port)
                supervisor.start(service, self.data_dir, self.env, self.args.workers)
                self.running.append(service)
                supervisor.wait_ready(service)
        if not self.args.no_relay:  # the outbox relays and housekeeping, as `emsupply up`
            self.running.append(self._spawn("worker", [
                sys.executable, "-m", "emsupply.worker", "--data-dir", str(self.data_dir),
                "--gateway-url", self.gateway]))
        if "hop" in self.args.parts:
            port = self.ports["passthrough"][0]
            service = self._spawn("passthrough", self.gunicorn("bench_speed:passthrough_app()",
                                                               port), port=port)
            self.running.append(service)
            supervisor.wait_ready(service)
        self.settle()
        self.timings["start_s"] = time.perf_counter() - started

    def settle(self, timeout_s: float = 15.0) -> None:
        """Wait until the relay process has started (its imports are not the parts' CPU)."""
        pids = [s.process.pid for s in self.running if s.name == "worker" and s.process]
        deadline = time.monotonic() + timeout_s
        before = cpu_seconds(pids)
        while pids and time.monotonic() < deadline:
            time.sleep(0.5)
            now = cpu_seconds(pids)
            if now - before < 0.05:
                return
            before = now

    def gunicorn(self, app: str, port: int) -> list[str]:
        """The command `emsupply up` (emsupply/supervisor.py) runs a service with."""
        return [sys.executable, "-m", "gunicorn", app, "--pythonpath", str(BENCH),
                "--bind", f"127.0.0.1:{port}", "--workers", str(self.args.workers),
                "--worker-class", "gthread", "--threads", "4", "--timeout", "60",
                "--graceful-timeout", "5", "--no-control-socket"]

    def _spawn(self, name: str, command: list[str], port: int = 0):
        from emsupply import supervisor

        service = supervisor.Service(name, "", port)
        service.log_path = self.data_dir / "logs" / f"{name}.log"
        with open(service.log_path, "ab") as log:
            service.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**self.env, "BENCH_SPEED_UPSTREAM": f"http://127.0.0.1:"
                     f"{self.ports['inventory'][0]}"}, start_new_session=True, cwd=ROOT)
        return service

    def make_tokens(self) -> None:
        from gateway import tokens
        from shared.db import Database

        db = Database(self.urls["gateway"])
        try:
            with db.unit_of_work() as session:
                for role, scope in (("admin", ()), ("commander", ())):
                    issued = tokens.create(session, role, scope, f"speed-{role}")
                    self.tokens[role], self.identities[role] = issued.token, issued.identity
                # One token per keeper (the rate limit is per token); QDN and all below it.
                for k in range(self.args.keepers):
                    issued = tokens.create(session, "keeper", ("QDN",), f"speed-keeper-{k + 1}")
                    self.tokens[f"keeper{k}"] = issued.token
        finally:
            db.dispose()

    def stop(self) -> None:
        from emsupply import supervisor

        supervisor.stop_all(self.running)
        self.running.clear()

    def workers_of(self, prefix: str) -> list[int]:
        return [pid for s in self.running if s.name.startswith(prefix) and s.process
                for pid in children(s.process.pid)]

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway'][0]}"

    def api(self, who: str) -> Api:
        return Api(self.gateway, self.tokens[who])


class Api:
    """A client of the gateway with a bearer token, on one keep-alive session."""

    def __init__(self, url: str, token: str):
        import requests

        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body=None, headers=None, ok=(200, 201)):
        answer = self.session.request(method, self.url + path, json=body, headers=headers,
                                      timeout=120)
        if answer.status_code not in ok:
            raise RuntimeError(f"{method} {path} -> {answer.status_code}: {answer.text[:500]}")
        return answer.json() if answer.content else None

    def pages(self, path: str) -> list[dict]:
        rows, cursor = [], None
        joiner = "&" if "?" in path else "?"
        while True:
            page = self.call("GET", f"{path}{joiner}limit=1000" +
                             (f"&cursor={cursor}" if cursor else ""))
            rows.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return rows


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- plan ----------------------------------------------------------------------------------------

def plan_sites(data) -> list[dict]:
    """Three villages of Liping county (first, middle and last), as bench_allocation.py."""
    villages = [w for w in data.warehouses if w["level"] == "village" and w["code"][:2] == "LP"
                and w["status"] == "active"]
    return [villages[0], villages[len(villages) // 2], villages[-1]]


def small_plan(api: Api, data, args, title: str) -> tuple[int, str, dict]:
    """An incident at three villages, and the request of a plan for 10 items at each
    (`--plan-quantity` of each, priorities 1-3), `nearest`: its incident, path and body."""
    chosen = plan_sites(data)
    incident = api.call("POST", "/api/v1/incidents", {
        "type": "rainstorm", "level": "IV", "title": title,
        "sites": [{"id": v["code"], "warehouse": v["code"]} for v in chosen]})
    body = {"policy": "nearest",
            "demands": [{"site": v["code"], "item": item, "quantity": args.plan_quantity,
                         "priority": 1 + k % 3}
                        for v in chosen for k, item in enumerate(PLAN_ITEMS)]}
    return incident["id"], f"/api/v1/incidents/{incident['id']}/allocations", body


def part_plan(suite: Suite, data, args) -> dict:
    api = suite.api("commander")
    incident_id, path, body = small_plan(api, data, args, "speed: small plan")
    times, cancels, shipments, trips = [], [], [], []
    meter = None
    for n in range(args.warmups + args.plans):
        if n == args.warmups:
            meter = CpuMeter(suite)
        started = time.perf_counter()
        plan = api.call("POST", path, body)
        elapsed = time.perf_counter() - started
        api.call("POST", f"/api/v1/allocations/{plan['id']}/cancel")
        cancels.append(time.perf_counter() - started - elapsed)
        if plan["status"] != "planned" or plan["unmet"]:
            raise RuntimeError(f"small plan {plan['id']}: {plan['status']}, "
                               f"unmet {plan['unmet'][:3]}")
        if n >= args.warmups:
            times.append(elapsed)
            shipments.append(len(plan["shipments"]))
            trips.append(len(plan.get("trips") or []))
    out = {"plan_median_s": statistics.median(times), "plan_p90_s": pct(times, 90),
           "cancel_median_s": statistics.median(cancels[args.warmups:]),
           "plan_min_s": min(times), "plan_n": len(times),
           "plan_shipments": statistics.median(shipments), "plan_trips": statistics.median(trips),
           "plan_lines": len(body["demands"]), "plan_load": load(),
           "plan_cpu": meter.per(len(times))}  # a plan and its cancel
    out.update(solver_alone(suite, api, incident_id, body, args))
    return out


def solver_alone(suite: Suite, api: Api, incident_id: int, body: dict, args) -> dict:
    """The solver's own time for the same request, in this process: the inventory's snapshot
    fetched once (through the gateway), the graph the service builds from its database, the
    demands and policy as the service makes them; `plans.depots` and `solver.solve` timed."""
    from types import SimpleNamespace

    from allocation_svc import driving, plans, solver
    from allocation_svc.inventory import merged
    from allocation_svc.roads import GraphCache
    from shared.config import load_settings
    from shared.db import Database

    items = sorted({d["item"] for d in body["demands"]})
    started = time.perf_counter()
    snap = api.call("GET", "/api/v1/stock/snapshot?" + urlencode([("item", s) for s in items]))
    snapshot_s = time.perf_counter() - started
    network = merged(None, snap)
    incident = api.call("GET", f"/api/v1/incidents/{incident_id}")
    sites = incident["sites"]
    by_id = {s["id"]: s for s in sites}
    weight = plans.unit_weights(api.pages("/api/v1/items"))
    demands = [solver.Demand(site=d["site"], node=by_id[d["site"]]["node"], item=d["item"],
                             quantity=d["quantity"], priority=d["priority"],
                             township=by_id[d["site"]]["township"],
                             county=by_id[d["site"]]["county"],
                             unit_weight_kg=weight.get(d["item"], 0.0))
               for d in body["demands"]]
    settings = load_settings("allocation", suite.env, suite.data_dir)
    policy = plans.Allocation._policy(SimpleNamespace(driving=driving(settings)), body,
                                      incident["level"])
    db = Database(suite.urls["allocation"])
    try:
        with db.reading() as session:
            graph = GraphCache().current(session)
    finally:
        db.dispose()
    table_s, solve_s, shipments = [], [], 0
    for n in range(args.warmups + args.plans):
        started = time.perf_counter()
        table = plans.depots(network, sites, graph, items)
        middle = time.perf_counter()
        result = solver.solve(graph, table, demands, policy)
        ended = time.perf_counter()
        if n >= args.warmups:
            table_s.append(middle - started)
            solve_s.append(ended - middle)
        shipments = len(result.shipments)
    return {"solver_median_s": statistics.median(solve_s),
            "depots_median_s": statistics.median(table_s), "solver_shipments": shipments,
            "snapshot_once_s": snapshot_s, "snapshot_bytes": len(json.dumps(snap))}


# -- storm ---------------------------------------------------------------------------------------

def part_storm(suite: Suite, data, args) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from stormcase import storm_townships

    from emsupply.scenario import DAYS, POPULATION

    api = suite.api("commander")
    towns = storm_townships(data)
    incident = api.call("POST", "/api/v1/incidents", {
        "type": "rainstorm", "level": "IV", "title": "speed: the seed's storm",
        "sites": [{"id": t["code"], "warehouse": t["code"], "population": people}
                  for t, people in zip(towns, POPULATION, strict=True)]})
    path = f"/api/v1/incidents/{incident['id']}/allocations"
    times, trips, shipments = [], [], []
    meter = None
    for n in range(1 + args.storms):
        if n == 1:
            meter = CpuMeter(suite)
        started = time.perf_counter()
        plan = api.call("POST", path, {"population_days": DAYS})
        elapsed = time.perf_counter() - started
        api.call("POST", f"/api/v1/allocations/{plan['id']}/cancel")
        if plan["status"] != "planned" or plan["unmet"]:
            raise RuntimeError(f"storm plan {plan['id']}: {plan['status']}, "
                               f"unmet {plan['unmet'][:3]}")
        if n:
            times.append(elapsed)
            trips.append(len(plan.get("trips") or []))
            shipments.append(len(plan["shipments"]))
    return {"storm_median_s": statistics.median(times), "storm_max_s": max(times),
            "storm_n": len(times), "storm_trips": statistics.median(trips),
            "storm_shipments": statistics.median(shipments), "storm_load": load(),
            "storm_cpu": meter.per(len(times))}


# -- keepers -------------------------------------------------------------------------------------

def keepers(suite: Suite, seconds: float, choose, keyed: bool = False) -> dict:
    """`suite.args.keepers` threads, each a keeper with its own token on its own keep-alive
    session, posting one movement per call for `seconds`; `choose(rng, n)` gives the body."""
    import requests

    count = suite.args.keepers
    barrier = threading.Barrier(count + 1)
    results: list[tuple[list[float], Counter]] = [None] * count  # type: ignore[list-item]
    run = secrets.token_hex(4)
    deadline = [0.0]
    url = suite.gateway + "/api/v1/movements"

    def keeper(index: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {suite.tokens[f'keeper{index}']}"
        rng = random.Random(index)
        latencies, statuses = [], Counter()
        barrier.wait()
        n = 0
        while time.perf_counter() < deadline[0]:
            headers = {"Idempotency-Key": f"speed-{run}-{index}-{n}"} if keyed else None
            started = time.perf_counter()
            answer = session.post(url, json=choose(rng, index, n), headers=headers, timeout=60)
            latencies.append(time.perf_counter() - started)
            statuses[answer.status_code] += 1
            n += 1
        session.close()
        results[index] = (latencies, statuses)

    threads = [threading.Thread(target=keeper, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    meter = CpuMeter(suite)
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = [x for lat, _ in results for x in lat]
    statuses = sum((s for _, s in results), Counter())
    ok = statuses.get(201, 0)
    return {"rate": ok / elapsed, "ok": ok, "calls": len(latencies), "statuses": dict(statuses),
            "p50_s": pct(latencies, 50), "p99_s": pct(latencies, 99), "seconds": elapsed,
            "load": load(), "cpu": meter.per(len(latencies))}


def hot_body(rng, index: int, n: int) -> dict:
    """Receipt +1 then issue -1 of the same balance, so stock stays where it was."""
    return {"warehouse": HOT[0], "item": HOT[1], "kind": "receipt" if n % 2 == 0 else "issue",
            "quantity": 1, "reference": f"speed-hot-{index}"}


def bare_updates(suite: Suite, seconds: float) -> dict:
    """The floor: `keepers` psycopg connections each looping a one-row UPDATE ... RETURNING and
    a commit on the hot balance's row, +1 and -1 alternately; the net change undone at the end."""
    import psycopg

    conninfo = libpq(suite.urls["inventory"])
    with psycopg.connect(conninfo) as conn:
        stock_id, before = conn.execute(
            "SELECT s.id, s.on_hand FROM stock s JOIN warehouses w ON w.id = s.warehouse_id "
            "JOIN items i ON i.id = s.item_id WHERE w.code = %s AND i.sku = %s", HOT).fetchone()
    count = suite.args.keepers
    barrier = threading.Barrier(count + 1)
    done = [0] * count
    latencies: list[list[float]] = [[] for _ in range(count)]
    deadline = [0.0]

    backends: list[int] = []

    def loop(index: int) -> None:
        with psycopg.connect(conninfo) as conn:
            backends.append(conn.info.backend_pid)
            barrier.wait()
            n, net = 0, 0
            while time.perf_counter() < deadline[0]:
                step = 1 if n % 2 == 0 else -1
                started = time.perf_counter()
                conn.execute("UPDATE stock SET on_hand = on_hand + %s WHERE id = %s "
                             "RETURNING on_hand", (step, stock_id)).fetchone()
                conn.commit()
                latencies[index].append(time.perf_counter() - started)
                n, net = n + 1, net + step
            if net:
                conn.execute("UPDATE stock SET on_hand = on_hand - %s WHERE id = %s",
                             (net, stock_id))
                conn.commit()
            done[index] = n

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    while len(backends) < count and any(t.is_alive() for t in threads):
        time.sleep(0.01)
    before_cpu, client_cpu = cpu_seconds(backends), time.process_time()
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    cpu = {"postgres": 1000 * (cpu_seconds(backends) - before_cpu) / max(1, sum(done)),
           "client": 1000 * (time.process_time() - client_cpu) / max(1, sum(done))}
    cpu["total"] = cpu["postgres"] + cpu["client"]
    with psycopg.connect(conninfo) as conn:
        after = conn.execute("SELECT on_hand FROM stock WHERE id = %s", (stock_id,)).fetchone()[0]
    if after != before:
        raise RuntimeError(f"the bare loop left the hot balance at {after}, not {before}")
    every = [x for lat in latencies for x in lat]
    return {"rate": sum(done) / elapsed, "calls": sum(done), "p50_s": pct(every, 50),
            "p99_s": pct(every, 99), "load": load(), "cpu": cpu}


def part_hot(suite: Suite, args) -> dict:
    served = keepers(suite, args.seconds, hot_body)
    bare = bare_updates(suite, args.seconds)
    return {"hot": served, "bare": bare}


def spread_balances(suite: Suite) -> list[tuple[str, str, bool]]:
    """Every item at the prefecture depot and the active county depots with stock enough to
    take a random walk of +-1 for a while."""
    api = suite.api("admin")
    perishable = {i["sku"]: i["perishable"] for i in api.pages("/api/v1/items")}
    depots = [w["code"] for w in api.pages("/api/v1/warehouses?level=county")
              if w["status"] == "active"]
    found = []
    for code in ["QDN", *depots]:
        for row in api.pages(f"/api/v1/stock?warehouse={code}"):
            if row["available"] >= 100:
                found.append((code, row["item"], perishable[row["item"]]))
    return found


def part_spread(suite: Suite, args) -> dict:
    balances = spread_balances(suite)

    def body(rng, index: int, n: int) -> dict:
        warehouse, item, perishable = rng.choice(balances)
        kind = rng.choice(("receipt", "issue"))
        out = {"warehouse": warehouse, "item": item, "kind": kind, "quantity": 1,
               "reference": f"speed-spread-{index}"}
        if kind == "receipt" and perishable:
            out["expires_on"] = FAR_DATE
        return out

    plain = keepers(suite, args.seconds, body)
    keyed = keepers(suite, args.seconds, body, keyed=True)
    return {"plain": plain, "keyed": keyed, "balances": len(balances),
            "warehouses": len({b[0] for b in balances})}


# -- hop -----------------------------------------------------------------------------------------

def passthrough_app():
    """A bare WSGI passthrough (no Flask, no token, no rate limit, no logging): the request's
    method, path, query, body and a few headers forwarded with urllib3 to the inventory service,
    with the signed identity headers the gateway would add (the commander's token's identity);
    the answer's status, Content-Type and body returned. What the extra hop costs by itself."""
    import urllib3

    from shared import auth

    upstream = os.environ["BENCH_SPEED_UPSTREAM"]
    secret = os.environ["EMSUPPLY_SECRET"]
    identity = auth.Identity("speed-commander", "commander")
    pool = urllib3.connection_from_url(upstream, maxsize=64, block=False)
    passed = (("CONTENT_TYPE", "Content-Type"), ("HTTP_ACCEPT", "Accept"),
              ("HTTP_ACCEPT_LANGUAGE", "Accept-Language"),
              ("HTTP_IDEMPOTENCY_KEY", "Idempotency-Key"))

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/readyz":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        method = environ["REQUEST_METHOD"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        query = environ.get("QUERY_STRING")
        path = environ.get("PATH_INFO", "/") + (f"?{query}" if query else "")
        headers = {name: environ[key] for key, name in passed if environ.get(key)}
        headers.update(auth.sign(secret, identity, method, path, body))
        answer = pool.urlopen(method, path, body=body or None, headers=headers, retries=False,
                              redirect=False, timeout=urllib3.Timeout(connect=1.0, read=15.0))
        start_response(f"{answer.status} {http.client.responses.get(answer.status, '')}",
                       [("Content-Type", answer.headers.get("Content-Type", "text/plain"))])
        return [answer.data]

    return app


def part_hop(suite: Suite, args) -> dict:
    from shared import auth

    ports = {"direct": suite.ports["inventory"][0], "gateway": suite.ports["gateway"][0],
             "bare": suite.ports["passthrough"][0]}
    identity = suite.identities["commander"]
    signed = {"at": 0.0, "headers": {}}

    def headers(way: str) -> dict:
        if way == "gateway":
            return {"Authorization": f"Bearer {suite.tokens['commander']}"}
        if way == "bare":
            return {}
        if time.monotonic() - signed["at"] > 20:  # as bench_gateway.py: a read's signature
            signed["headers"] = auth.sign(suite.secret, identity, "GET", READ_PATH)
            signed["at"] = time.monotonic()
        return signed["headers"]

    connections = {way: http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                   for way, port in ports.items()}
    times: dict[str, list[float]] = defaultdict(list)

    reconnects: Counter = Counter()

    def one(way: str) -> float:
        """One timed call; a keep-alive connection the server closed meanwhile (gunicorn keeps
        an idle one 2 s) is opened again and the call repeated, untimed."""
        for attempt in range(3):
            conn = connections[way]
            sent = headers(way)
            started = time.perf_counter()
            try:
                conn.request("GET", READ_PATH, headers=sent)
                answer = conn.getresponse()
                answer.read()
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                reconnects[way] += 1
                continue
            elapsed = time.perf_counter() - started
            if answer.status != 200:
                raise RuntimeError(f"hop {way}: {answer.status}")
            return elapsed if attempt == 0 else one(way)
        raise RuntimeError(f"hop {way}: the connection kept failing")

    for way in ports:
        for _ in range(50):
            one(way)
    rounds = 10
    per_round = max(1, args.hop_calls // rounds)
    cpu: dict[str, Counter] = defaultdict(Counter)
    for r in range(rounds):
        order = list(ports) if r % 2 == 0 else list(reversed(ports))
        for way in order:
            meter = CpuMeter(suite)
            for _ in range(per_round):
                times[way].append(one(way))
            cpu[way].update(meter.used())
    for conn in connections.values():
        conn.close()
    out = {way: {"p50_s": pct(t, 50), "p90_s": pct(t, 90), "p99_s": pct(t, 99), "n": len(t),
                 "cpu": per_unit(dict(cpu[way]), len(t))}
           for way, t in times.items()}
    out["load"] = load()
    out["reconnects"] = dict(reconnects)
    return out


# -- the books -----------------------------------------------------------------------------------

def check_books(suite: Suite) -> dict:
    import psycopg

    queries = {
        "balances off their ledger": (
            "SELECT w.code, i.sku, s.on_hand, coalesce(m.total, 0) FROM stock s "
            "JOIN warehouses w ON w.id = s.warehouse_id JOIN items i ON i.id = s.item_id "
            "LEFT JOIN (SELECT warehouse_id, item_id, sum(quantity) AS total FROM movements "
            "GROUP BY warehouse_id, item_id) m ON m.warehouse_id = s.warehouse_id "
            "AND m.item_id = s.item_id WHERE s.on_hand <> coalesce(m.total, 0)"),
        "balances off their lots": (
            "SELECT w.code, i.sku, s.on_hand, coalesce(l.total, 0) FROM stock s "
            "JOIN warehouses w ON w.id = s.warehouse_id JOIN items i ON i.id = s.item_id "
            "LEFT JOIN (SELECT stock_id, sum(on_hand) AS total FROM lots GROUP BY stock_id) l "
            "ON l.stock_id = s.id WHERE s.on_hand <> coalesce(l.total, 0)"),
        "reserved other than its live holds": (
            "SELECT w.code, i.sku, s.reserved, coalesce(h.total, 0) FROM stock s "
            "JOIN warehouses w ON w.id = s.warehouse_id JOIN items i ON i.id = s.item_id "
            "LEFT JOIN (SELECT rl.stock_id, sum(rl.quantity) AS total FROM reservation_lines rl "
            "JOIN reservations r ON r.id = rl.reservation_id WHERE r.status = 'held' "
            "GROUP BY rl.stock_id) h ON h.stock_id = s.id "
            "WHERE s.reserved <> coalesce(h.total, 0)"),
        "negative or over-reserved balances": (
            "SELECT w.code, i.sku, s.on_hand, s.reserved FROM stock s "
            "JOIN warehouses w ON w.id = s.warehouse_id JOIN items i ON i.id = s.item_id "
            "WHERE s.on_hand < 0 OR s.reserved < 0 OR s.reserved > s.on_hand"),
        "negative lots": "SELECT stock_id, lot, on_hand, expires_on FROM lots WHERE on_hand < 0",
    }
    found = {}
    with psycopg.connect(libpq(suite.urls["inventory"])) as conn:
        for label, query in queries.items():
            found[label] = conn.execute(query).fetchall()
        found["_lines"] = conn.execute("SELECT count(*) FROM movements").fetchone()[0]
        found["_balances"] = conn.execute("SELECT count(*) FROM stock").fetchone()[0]
        found["_held"] = conn.execute(
            "SELECT count(*) FROM reservations WHERE status = 'held'").fetchone()[0]
    return found


# -- profiling -----------------------------------------------------------------------------------

class Profiler:
    """py-spy on every worker of the named services for `seconds` (idle samples too: a worker
    waiting on another service or on a lock is where a caller's time goes)."""

    def __init__(self, suite: Suite, prefixes: tuple[str, ...], seconds: float, out: Path,
                 tag: str, rate: int):
        self.rate = rate
        self.files: dict[str, list[Path]] = defaultdict(list)
        self.procs = []
        out.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        for prefix in prefixes:
            for pid in suite.workers_of(prefix):
                path = out / f"{tag}-{prefix}-{pid}.raw"
                self.files[prefix].append(path)
                self.procs.append(subprocess.Popen(
                    [str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds)),
                     "--rate", str(rate), "--idle", "--nonblocking", "--format", "raw",
                     "-o", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        time.sleep(1.0)  # attached

    def wait(self) -> None:
        for proc in self.procs:
            _, err = proc.communicate(timeout=120)
            if proc.returncode:
                print(f"py-spy failed: {err.decode(errors='replace')[-300:]}", file=sys.stderr)


def read_raw(paths: list[Path]) -> list[tuple[list[str], int]]:
    """(frames root first, without line numbers and with short file names; count). A record
    ends with its count and a newline; a frame's name may hold newlines of its own (code made
    by exec, as SQLAlchemy makes some)."""
    import re

    stacks = []
    for path in paths:
        if not path.exists():
            continue
        for match in re.finditer(r"(.*?) (\d+)\n", path.read_text(), re.S):
            frames = match.group(1).replace("\n", " ").split(";")
            if frames and frames[0].startswith("thread ("):
                frames = frames[1:]
            stacks.append(([_short(f) for f in frames], int(match.group(2))))
    return stacks


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


WAITING_LEAVES = ("recv_into", "readinto", "wait (psycopg", "_wait_conn", "select (",
                  "poll (", "sleep", "acquire", "wait (threading", "_recv", "recv (",
                  "accept", "_wait_for_tstate_lock", "wait (selectors", "epoll",
                  "_read_from_socket")


def summarise(stacks, within: str, phases: list[tuple], units: int, rate: int,
              top: int = 22) -> dict:
    """Milliseconds per unit (a plan, a movement) in each phase, of which waiting (the leaf a
    socket, a lock, psycopg's wait), and the top frames by total time; all among the stacks
    that hold `within`. A phase is (label, a frame it holds[, a frame it must not hold]); a
    frame may be given as alternatives, `a|b` (code before and after a change).
    Frames in (nearly) every such stack (gunicorn, Flask, the decorators) are left out of the
    top: they say nothing."""
    per = 1000.0 / rate / max(1, units)
    inside = [(frames, n) for frames, n in stacks if any(within in f for f in frames)]
    total = sum(n for _, n in inside)

    def waits(frames) -> bool:
        return any(w in frames[-1] for w in WAITING_LEAVES)

    rows = []
    for label, marker, *rest in phases:
        unless = rest[0] if rest else None
        hit = [(frames, n) for frames, n in inside
               if any(m in f for m in marker.split("|") for f in frames)
               and not (unless and any(unless in f for f in frames))]
        rows.append((label, sum(n for _, n in hit) * per,
                     sum(n for frames, n in hit if waits(frames)) * per))
    inclusive: Counter = Counter()
    own: Counter = Counter()
    for frames, n in inside:
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    telling = [(name, n * per) for name, n in inclusive.most_common()
               if n < 0.97 * total][:top]
    return {"total_ms": total * per, "phases": rows, "top": telling,
            "waiting_ms": sum(n for frames, n in inside if waits(frames)) * per,
            "leaves": [(name, n * per) for name, n in own.most_common(12)]}


def profile_plans(suite: Suite, data, args) -> dict:
    api = suite.api("commander")
    _, path, body = small_plan(api, data, args, "speed: profiled plans")
    for _ in range(2):
        plan = api.call("POST", path, body)
        api.call("POST", f"/api/v1/allocations/{plan['id']}/cancel")
    spy = Profiler(suite, ("allocation", "inventory", "gateway"), args.profile_seconds,
                   args.profile, "plan", args.profile_rate)
    until = time.monotonic() + args.profile_seconds - 3
    plans, times = 0, []
    while time.monotonic() < until:
        started = time.perf_counter()
        plan = api.call("POST", path, body)
        times.append(time.perf_counter() - started)
        api.call("POST", f"/api/v1/allocations/{plan['id']}/cancel")
        plans += 1
    spy.wait()
    rate = args.profile_rate
    every = "handle_request (gunicorn"
    return {"plans": plans, "median_s": statistics.median(times),
            "allocation": summarise(read_raw(spy.files["allocation"]), every, PLAN_PHASES,
                                    plans, rate),
            "inventory": summarise(read_raw(spy.files["inventory"]), every,
                                   INVENTORY_PLAN_PHASES, plans, rate),
            "gateway": summarise(read_raw(spy.files["gateway"]), every, GATEWAY_PHASES, plans,
                                 rate),
            "load": load()}


VIEW = "run_command (shared/web.py"
WORK = "command_view.<locals>.work (shared/web.py"
PLAN_PHASES = [
    ("the whole view (run_command)", VIEW),
    ("key claimed, answer stored (not the work)", "_claimed (shared/web.py",
     "_keyed.<locals>.<lambda>"),
    ("Allocation.create", "Allocation.create ("),
    ("  incident read + graph", "ensure_network ("),
    ("  items() call", "HttpInventory.items ("),
    ("  snapshot call (network())", "HttpInventory.network ("),
    ("  depots() table", "depots (allocation_svc/plans.py"),
    ("  solver.solve", "solve (allocation_svc/solver.py"),
    ("  record (_record)", "Allocation._record ("),
    ("  hold (_hold)", "Allocation._hold ("),
    ("    of which the reserve call", "HttpInventory.reserve ("),
    ("answer: PlanOut dump", "Schema.dump (marshmallow/schema.py"),
    ("answer: JSON text", "_dumps (shared/web.py"),
    ("the cancel (Allocation.cancel)", "Allocation.cancel ("),
]
INVENTORY_PLAN_PHASES = [
    ("every request", "handle_request (gunicorn"),
    ("snapshot view (query + answer)", "Snapshot.get (inventory_svc/api/snapshot.py"),
    ("  snapshot query", "snapshot (inventory_svc/snapshot.py"),
    ("reads' answers: schema dump (mostly the snapshot's)", "Schema.dump (marshmallow/schema.py",
     VIEW),
    ("reads' answers: JSON text", "JSONEncoder.encode (json/encoder.py", VIEW),
    ("hold (create_reservation)", "create_reservation ("),
    ("release (release_reservation)", "release_reservation ("),
    ("items list", "list_items ("),
    ("one warehouse", "get_warehouse ("),
]
GATEWAY_PHASES = [
    ("every request", "handle_request (gunicorn"),
    ("waiting on the upstream call", "urlopen (urllib3/connectionpool.py"),
    ("the gateway's own work", "handle_request (gunicorn", "urlopen (urllib3/connectionpool.py"),
    ("  token check", "authenticate ("),
    ("  rate limit (Redis)", "gateway/ratelimit.py|flask_limiter"),
    ("  logging", "logging/__init__.py"),
    ("  the body read in a thread (intake.take_body)", "take_body (gateway/intake.py"),
    ("relayed events taken in (ingest)", "ingest (gateway/__init__.py"),
]


def profile_hot(suite: Suite, args) -> dict:
    spy = Profiler(suite, ("inventory", "gateway"), args.profile_seconds, args.profile, "hot",
                   args.profile_rate)
    served = keepers(suite, args.profile_seconds - 3, hot_body)
    spy.wait()
    rate, moves = args.profile_rate, served["ok"]
    inventory = summarise(read_raw(spy.files["inventory"]), "handle_request (gunicorn",
                          HOT_PHASES, moves, rate)
    gateway = summarise(read_raw(spy.files["gateway"]), "handle_request (gunicorn",
                        GATEWAY_PHASES, moves, rate)
    return {"movements": moves, "rate": served["rate"], "inventory": inventory,
            "gateway": gateway, "load": load()}


HOT_PHASES = [
    ("every request", "handle_request (gunicorn"),
    ("outside the command (gunicorn, Flask, checks)", "handle_request (gunicorn", VIEW),
    ("  signature check", "verify (shared/auth.py"),
    ("  request parsing (webargs)", "Parser.parse (webargs/core.py"),
    ("the command (run_command)", VIEW),
    ("  the movement (ledger.post_movement)", "post_movement (inventory_svc/ledger.py"),
    ("  key stored + commit (not the work)", "_keyed (shared/web.py", WORK),
    ("  answer dump", "Schema.dump (marshmallow/schema.py"),
    ("every SQL round trip (psycopg execute)", "Cursor.execute (psycopg/cursor.py"),
    ("logging", "logging/__init__.py"),
]


def print_profile(title: str, summary: dict, unit: str) -> None:
    print(f"\n{title}: {summary['total_ms']:.1f} ms per {unit} under it "
          f"({summary['waiting_ms']:.1f} ms waiting on a socket, lock or psycopg)")
    for label, ms, idle in summary["phases"]:
        print(f"  {label:<34} {ms:8.2f} ms  (waiting {idle:6.2f})")
    print("  top frames by total time:")
    for name, ms in summary["top"]:
        print(f"    {ms:8.2f} ms  {name}")
    print("  top leaves (own time):")
    for name, ms in summary["leaves"]:
        print(f"    {ms:8.2f} ms  {name}")


# -- report --------------------------------------------------------------------------------------

def report(figures: dict, args, suite: Suite) -> None:
    rows = []

    def row(name, value, aim="", met=None, note=""):
        mark = "" if met is None else ("yes" if met else "NO")
        rows.append((name, value, aim, mark, note))

    if "plan" in figures:
        p = figures["plan"]
        median, solver_s = p["plan_median_s"] * 1e3, p["solver_median_s"] * 1e3
        row("small plan through the gateway, median", f"{median:.1f} ms", "< 60 ms",
            median < AIMS["plan_ms"], f"p90 {p['plan_p90_s'] * 1e3:.1f} ms, n={p['plan_n']}, "
            f"{p['plan_shipments']:.0f} shipments, load {p['plan_load']}; "
            f"{cpu_note(p['plan_cpu'], 'plan and its cancel')}")
        row("  its cancel (the hold released), median", f"{p['cancel_median_s'] * 1e3:.1f} ms",
            "", None)
        row("  solver alone (solve), median", f"{solver_s:.2f} ms", "", None,
            f"{p['solver_shipments']} shipments (the service's: {p['plan_shipments']:.0f}); "
            f"depots() {p['depots_median_s'] * 1e3:.2f} ms; snapshot "
            f"{p['snapshot_bytes'] / 1024:.0f} KiB fetched once in "
            f"{p['snapshot_once_s'] * 1e3:.0f} ms")
        row("  HTTP median / solver median", f"{median / solver_s:.1f}x", "< 10x",
            median / solver_s < AIMS["plan_solver_ratio"])
    if "storm" in figures:
        s = figures["storm"]
        row("storm plan through the gateway, median", f"{s['storm_median_s'] * 1e3:.0f} ms",
            "< 1 s", s["storm_median_s"] * 1e3 < AIMS["storm_ms"],
            f"max {s['storm_max_s'] * 1e3:.0f} ms, n={s['storm_n']}, {s['storm_trips']:.0f} "
            f"trips, {s['storm_shipments']:.0f} shipments, load {s['storm_load']}; "
            f"{cpu_note(s['storm_cpu'], 'storm plan and its cancel')}")
    if "hot" in figures:
        h, b = figures["hot"]["hot"], figures["hot"]["bare"]
        row("hot balance, 16 keepers via gateway", f"{h['rate']:.0f}/s", ">= 400/s",
            h["rate"] >= AIMS["hot_rate"], movements_note(h))
        row("  bare UPDATE ... RETURNING loop, 16 conns", f"{b['rate']:.0f}/s", "", None,
            f"p50 {b['p50_s'] * 1e3:.2f} ms, p99 {b['p99_s'] * 1e3:.2f} ms, load {b['load']}; "
            f"{cpu_note(b['cpu'], 'update')}")
        row("  gateway rate / bare rate", f"{h['rate'] / b['rate']:.2f}", ">= 0.5",
            h["rate"] / b["rate"] >= AIMS["hot_bare_ratio"])
    if "spread" in figures:
        sp = figures["spread"]
        a, k = sp["plain"], sp["keyed"]
        row(f"spread over {sp['balances']} balances, 16 keepers", f"{a['rate']:.0f}/s",
            ">= 800/s", a["rate"] >= AIMS["spread_rate"], movements_note(a))
        row("  the same with Idempotency-Key", f"{k['rate']:.0f}/s", "", None,
            movements_note(k))
        row("  keyed / plain", f"{k['rate'] / a['rate']:.2f}", ">= 0.8",
            k["rate"] / a["rate"] >= AIMS["keys_ratio"])
    if "hop" in figures:
        hp = figures["hop"]
        d, gw, bare = (hp[w]["p50_s"] * 1e3 for w in ("direct", "gateway", "bare"))
        row("read direct to inventory, p50", f"{d:.2f} ms", "", None,
            f"p90 {hp['direct']['p90_s'] * 1e3:.2f} ms, n={hp['direct']['n']}, "
            f"load {hp['load']}; {cpu_note(hp['direct']['cpu'], 'read')}")
        row("  through the gateway, p50", f"{gw:.2f} ms", "", None,
            f"p90 {hp['gateway']['p90_s'] * 1e3:.2f} ms; "
            f"{cpu_note(hp['gateway']['cpu'], 'read')}")
        row("  through a bare WSGI passthrough, p50", f"{bare:.2f} ms", "", None,
            f"p90 {hp['bare']['p90_s'] * 1e3:.2f} ms; {cpu_note(hp['bare']['cpu'], 'read')}")
        row("  gateway adds at p50", f"{gw - d:.2f} ms", "< 0.8 ms", gw - d < AIMS["hop_ms"],
            f"the hop itself {bare - d:.2f} ms, our gateway code {gw - bare:.2f} ms")
    width = [max(len(str(r[i])) for r in rows + [("figure", "value", "aim", "met", "")])
             for i in range(4)]
    print(f"\n{'figure':<{width[0]}}  {'value':>{width[1]}}  {'aim':<{width[2]}}  "
          f"{'met':<{width[3]}}  notes")
    for name, value, aim, met, note in rows:
        print(f"{name:<{width[0]}}  {value:>{width[1]}}  {aim:<{width[2]}}  "
              f"{met:<{width[3]}}  {note}")


def print_books(books: dict) -> None:
    bad = {k: v for k, v in books.items() if not k.startswith("_") and v}
    print(f"\nbooks: {books['_balances']} balances, {books['_lines']} ledger lines, "
          f"{books['_held']} holds still held: ", end="")
    if not bad:
        print("OK (every balance equals its ledger and its lots, reserved equals its live "
              "holds, nothing negative)")
        return
    print("MISMATCHES")
    for label, found in bad.items():
        print(f"  {label}: {len(found)}")
        for entry in found[:10]:
            print(f"    {entry}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS),
                        help=f"comma-separated parts of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--plans", type=int, default=30, help="timed small plans")
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument("--plan-quantity", type=int, default=50,
                        help="of each item at each of the three villages")
    parser.add_argument("--storms", type=int, default=5, help="timed storm plans")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="how long each keepers' run (and the bare loop) lasts")
    parser.add_argument("--keepers", type=int, default=16)
    parser.add_argument("--hop-calls", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2,
                        help="gunicorn workers per service (emsupply up's default)")
    parser.add_argument("--instances", type=int, default=1,
                        help="inventory and allocation services each (N>1 needs the gateway's "
                             "several upstream URLs)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432",
                        help="a PostgreSQL server (libpq URL without database) whose user may "
                             "create databases")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14",
                        help="Redis URL; its database is flushed first")
    parser.add_argument("--rate-limit", default="1000000 per minute",
                        help="EMSUPPLY_RATE_LIMIT (per token; '' keeps the gateway's 1200 a "
                             "minute, under which 16 keepers cannot reach 400/s)")
    parser.add_argument("--no-relay", action="store_true",
                        help="do not run the outbox relays (python -m emsupply.worker)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="directory: profiled passes of plan and hot with py-spy after the "
                             "measured parts, raw files kept there")
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument("--profile-rate", type=int, default=100, help="samples a second")
    parser.add_argument("--reseed", action="store_true",
                        help="seed afresh even when a template matches (seeded databases are "
                             f"kept as {DB_PREFIX}_seeded_<fingerprint>_<service> between runs)")
    parser.add_argument("--drop-templates", action="store_true",
                        help="drop every kept seeded template and exit")
    parser.add_argument("--keep", action="store_true",
                        help="leave the databases and the data directory (for a look after)")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown} (known: {', '.join(PARTS)})")
    return args


def interrupted(*_) -> None:
    raise KeyboardInterrupt  # so that `finally` stops the services and drops the databases


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.drop_templates:
        print("dropped:", ", ".join(drop_templates(args.pg)) or "nothing")
        return 0
    command = shlex.join([".venv/bin/python", "bench/bench_speed.py", *sys.argv[1:]])
    from emsupply import dataset

    began = time.perf_counter()
    print(f"command: {command}")
    print(f"machine: {os.cpu_count()} CPUs, load average {load()} at the start")
    print(f"code: {code_under_test()}")
    suite = Suite(args)
    figures: dict = {}
    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        data = dataset.qiandongnan()
        suite.prepare(data)
        suite.seed(data)
        suite.start()
        suite.make_tokens()
        print(f"setup: databases {suite.timings['databases_s']:.1f} s, seeded in "
              f"{suite.timings['seed_s']:.1f} s ({suite.timings['seed_rows']}), started in "
              f"{suite.timings['start_s']:.1f} s: gateway {suite.gateway}, "
              f"{args.workers} gthread workers x 4 threads per service, "
              f"{args.instances} instance(s) of inventory and allocation, relays "
              f"{'off' if args.no_relay else 'on'}, rate limit "
              f"{args.rate_limit or 'the default'}", flush=True)
        for part in args.parts:
            started = time.perf_counter()
            if part == "plan":
                figures["plan"] = part_plan(suite, data, args)
            elif part == "storm":
                figures["storm"] = part_storm(suite, data, args)
            elif part == "hot":
                figures["hot"] = part_hot(suite, args)
            elif part == "spread":
                figures["spread"] = part_spread(suite, args)
            elif part == "hop":
                figures["hop"] = part_hop(suite, args)
            print(f"  {part}: done in {time.perf_counter() - started:.0f} s, load {load()}",
                  flush=True)
        profiles = {}
        if args.profile:
            if "plan" in args.parts:
                profiles["plan"] = profile_plans(suite, data, args)
            if "hot" in args.parts:
                profiles["hot"] = profile_hot(suite, args)
        time.sleep(1.5)  # the last relayed events and released holds settle
        books = check_books(suite)
        report(figures, args, suite)
        print_books(books)
        if "plan" in profiles:
            p = profiles["plan"]
            print(f"\nprofile of {p['plans']} small plans (median {p['median_s'] * 1e3:.0f} ms "
                  f"while profiled, load {p['load']}), py-spy at {args.profile_rate} Hz, "
                  "idle samples included; milliseconds per plan:")
            print_profile("allocation workers, every request (the plan and its cancel)",
                          p["allocation"], "plan")
            print_profile("inventory workers, every request during plans", p["inventory"],
                          "plan")
            print_profile("gateway workers, every request (the plan and its cancel)",
                          p["gateway"], "plan")
        if "hot" in profiles:
            h = profiles["hot"]
            print(f"\nprofile of {h['movements']} hot-balance movements ({h['rate']:.0f}/s "
                  f"while profiled, load {h['load']}); milliseconds per movement:")
            print_profile("inventory workers, every request", h["inventory"], "movement")
            print_profile("gateway workers, every request", h["gateway"], "movement")
        print(f"\nwhole run {time.perf_counter() - began:.0f} s; load average {load()} at the end")
        print(f"command: {command}")
        bad = any(v for k, v in books.items() if not k.startswith("_"))
        return 1 if bad else 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        suite.stop()
        if not args.keep:
            with contextlib.suppress(Exception):
                import psycopg

                with psycopg.connect(f"{args.pg}/postgres", autocommit=True) as conn:
                    for name in SERVICES:
                        conn.execute(f'DROP DATABASE IF EXISTS "{DB_PREFIX}_{name}" WITH (FORCE)')
            shutil.rmtree(suite.data_dir, ignore_errors=True)
        else:
            print(f"kept: databases {DB_PREFIX}_*, data directory {suite.data_dir}")


if __name__ == "__main__":
    raise SystemExit(main())
