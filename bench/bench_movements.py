"""How many stock movements a second the inventory service takes, and what a bare database
insert loop takes on the same machine at the same concurrency.

The service runs under gunicorn on a PostgreSQL database of its own (created fresh, migrated);
client threads post receipts and issues with signed identity headers, one movement per HTTP
call, spread over a few depots and items. Then the same number of rows is written by a bare
SQLAlchemy Core insert loop, one row per transaction, into a scratch table. Both figures are
printed side by side with their ratio.

    python bench/bench_movements.py --movements 10000 --concurrency 16

Needs a PostgreSQL server; --pg-url (or EMSUPPLY_BENCH_PG_URL) names one it can create
databases on. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    text,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared import auth  # noqa: E402
from shared.migrate import upgrade  # noqa: E402

SECRET = "bench-secret-0123456789abcdef"
ADMIN = auth.Identity("bench", "admin")
DEPOTS = ["QDN", "KL", "LP", "CJ", "KL-T01", "KL-T02", "LP-T01", "CJ-T01"]
ITEMS = ["TENT", "QUILT", "RICE", "WATER"]  # WATER is perishable: its stock is in dated lots


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--movements", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=16, help="client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--port", type=int, default=18731)
    parser.add_argument("--database", default="emsupply_bench")
    parser.add_argument("--pg-url", default=os.environ.get(
        "EMSUPPLY_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL URL whose user may create databases")
    parser.add_argument("--idempotency", action="store_true",
                        help="send an Idempotency-Key with every movement")
    return parser.parse_args(argv)


def fresh_database(admin_url: str, name: str) -> str:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


class Client:
    """One keep-alive connection that signs every call the way the gateway does."""

    def __init__(self, port: int, identity: auth.Identity = ADMIN):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.identity = identity

    def call(self, method: str, path: str, payload=None, headers=None) -> tuple[int, dict]:
        body = b"" if payload is None else json.dumps(payload).encode()
        all_headers = {**auth.sign(SECRET, self.identity, method, path, body), **(headers or {})}
        if body:
            all_headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=body or None, headers=all_headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, (json.loads(data) if data else {})


def _stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (Linux; [] elsewhere or gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by processes `pids`."""
    ticks = sum(int(fields[11]) + int(fields[12]) for fields in map(_stat, pids) if fields)
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    entries = os.listdir("/proc") if os.path.isdir("/proc") else []
    return [int(entry) for entry in entries
            if entry.isdigit() and (_stat(entry) or ["", ""])[1] == str(pid)]


@contextmanager
def server(url: str, args: argparse.Namespace):
    data_dir = Path(tempfile.mkdtemp(prefix="emsupply-bench-"))
    env = {**os.environ, "EMSUPPLY_INVENTORY_DB": url, "EMSUPPLY_SECRET": SECRET,
           "EMSUPPLY_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "gunicorn", "inventory_svc:create_app()",
               "--no-control-socket", "--bind", f"127.0.0.1:{args.port}",
               "--workers", str(args.workers), "--worker-class", "gthread",
               "--threads", str(args.threads), "--timeout", "120", "--backlog", "2048"]
    log = open(data_dir / "gunicorn.log", "wb")  # noqa: SIM115 (the child writes it)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                               cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=1)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("gunicorn did not start:\n" + (data_dir / "gunicorn.log")
                                 .read_text()[-2000:])
            time.sleep(0.2)
        yield process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def seed(port: int) -> None:
    client = Client(port)
    tree = [("QDN", "prefecture", None), ("KL", "county", "QDN"), ("LP", "county", "QDN"),
            ("CJ", "county", "QDN"), ("KL-T01", "township", "KL"),
            ("KL-T02", "township", "KL"), ("LP-T01", "township", "LP"),
            ("CJ-T01", "township", "CJ")]
    for code, level, parent in tree:
        status, body = client.call("POST", "/api/v1/warehouses", {
            "code": code, "name": code, "level": level, "parent": parent})
        assert status == 201, body
    for sku in ITEMS:
        status, body = client.call("POST", "/api/v1/items", {
            "sku": sku, "name": sku.title(), "unit": "piece", "perishable": sku == "WATER"})
        assert status == 201, body
    for code in DEPOTS:
        for sku in ITEMS:
            for expires in ("2027-03-01", "2027-09-01"):
                status, body = client.call("POST", "/api/v1/movements", {
                    "warehouse": code, "item": sku, "kind": "receipt", "quantity": 1_000_000,
                    "expires_on": expires})
                assert status == 201, body


def movement(rng: random.Random) -> dict:
    body = {"warehouse": rng.choice(DEPOTS), "item": rng.choice(ITEMS),
            "kind": rng.choice(("receipt", "issue")), "quantity": rng.randint(1, 20)}
    if body["kind"] == "receipt":
        body["expires_on"] = rng.choice(("2027-03-01", "2027-09-01", "2028-01-01"))
        body["reference"] = f"PO-{rng.randint(1, 10_000)}"
    return body


def drive(port: int, total: int, concurrency: int, idempotency: bool) -> dict:
    """Post `total` movements from `concurrency` threads; throughput and latencies."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)
    run_id = os.urandom(4).hex()  # keys of one run never replay another's

    def run(index: int, count: int) -> None:
        rng = random.Random(index)
        keeper = auth.Identity(f"keeper-{index}", "keeper", ("QDN",))
        client = Client(port, keeper)
        mine, seen = [], {}
        barrier.wait()
        for n in range(count):
            headers = {"Idempotency-Key": f"bench-{run_id}-{index}-{n}"} if idempotency else None
            started = time.perf_counter()
            status, _ = client.call("POST", "/api/v1/movements", movement(rng), headers)
            mine.append(time.perf_counter() - started)
            seen[status] = seen.get(status, 0) + 1
        with lock:
            latencies.extend(mine)
            for status, n in seen.items():
                statuses[status] = statuses.get(status, 0) + n

    shares = [total // concurrency + (1 if i < total % concurrency else 0)
              for i in range(concurrency)]
    threads = [threading.Thread(target=run, args=(i, n)) for i, n in enumerate(shares)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"count": total, "seconds": elapsed, "rate": total / elapsed, "statuses": statuses,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


def bare_inserts(url: str, total: int, concurrency: int) -> dict:
    """The floor to compare with: one row per transaction, SQLAlchemy Core, same threads."""
    metadata = MetaData()
    scratch = Table("bench_scratch", metadata,
                    Column("id", BigInteger, primary_key=True, autoincrement=True),
                    Column("warehouse_id", Integer, nullable=False),
                    Column("item_id", Integer, nullable=False),
                    Column("quantity", BigInteger, nullable=False),
                    Column("note", String(200)),
                    Column("at", DateTime(timezone=True), nullable=False))
    engine = create_engine(url, pool_size=concurrency, max_overflow=0)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    barrier = threading.Barrier(concurrency + 1)

    def run(index: int, count: int) -> None:
        rng = random.Random(index)
        barrier.wait()
        for _ in range(count):
            with engine.begin() as conn:
                conn.execute(insert(scratch).values(
                    warehouse_id=rng.randint(1, 8), item_id=rng.randint(1, 4),
                    quantity=rng.randint(1, 20), note="bench", at=datetime.now(UTC)))

    shares = [total // concurrency + (1 if i < total % concurrency else 0)
              for i in range(concurrency)]
    threads = [threading.Thread(target=run, args=(i, n)) for i, n in enumerate(shares)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        written = conn.execute(text("SELECT count(*) FROM bench_scratch")).scalar()
    metadata.drop_all(engine)
    engine.dispose()
    return {"count": written, "seconds": elapsed, "rate": written / elapsed}


def check_ledger(url: str) -> str:
    """After the run the books must still balance: every balance is the sum of its lines."""
    engine = create_engine(url)
    with engine.connect() as conn:
        wrong = conn.execute(text(
            "SELECT count(*) FROM stock s LEFT JOIN (SELECT warehouse_id, item_id, "
            "sum(quantity) AS total FROM movements GROUP BY warehouse_id, item_id) m "
            "ON m.warehouse_id = s.warehouse_id AND m.item_id = s.item_id "
            "WHERE s.on_hand <> coalesce(m.total, 0)")).scalar()
        lots = conn.execute(text(
            "SELECT count(*) FROM stock s JOIN (SELECT stock_id, sum(on_hand) AS total FROM lots "
            "GROUP BY stock_id) l ON l.stock_id = s.id WHERE s.on_hand <> l.total")).scalar()
        lines = conn.execute(text("SELECT count(*) FROM movements")).scalar()
    engine.dispose()
    return (f"{lines} ledger lines; balances off their ledger: {wrong}; "
            f"balances off their lots: {lots}")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    url = fresh_database(args.pg_url, args.database)
    upgrade("inventory_svc", url)
    print(f"inventory service: gunicorn {args.workers} workers x {args.threads} threads "
          f"(gthread), PostgreSQL database {args.database}; {args.concurrency} client threads, "
          f"{os.cpu_count()} CPUs")
    with server(url, args) as master:
        seed(args.port)
        drive(args.port, min(1000, args.movements), args.concurrency, args.idempotency)  # warm
        engine = create_engine(url)
        with engine.connect() as conn:
            backends = list(conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")).scalars())
        engine.dispose()
        workers = children(master)
        before = cpu_seconds(workers), cpu_seconds(backends), time.process_time()
        service = drive(args.port, args.movements, args.concurrency, args.idempotency)
        after = cpu_seconds(workers), cpu_seconds(backends), time.process_time()
    bare = bare_inserts(url, args.movements, args.concurrency)
    print(f"movements via HTTP : {service['count']:>7} in {service['seconds']:6.2f} s = "
          f"{service['rate']:7.0f}/s   p50 {service['p50_ms']:.1f} ms   "
          f"p99 {service['p99_ms']:.1f} ms   statuses {service['statuses']}")
    print(f"bare Core inserts  : {bare['count']:>7} in {bare['seconds']:6.2f} s = "
          f"{bare['rate']:7.0f}/s   (one row per transaction, {args.concurrency} threads)")
    print(f"ratio              : {service['rate'] / bare['rate']:.2f} of the bare insert rate")
    per = [1000 * (b - a) / args.movements for a, b in zip(before, after, strict=True)]
    print(f"CPU per movement   : service {per[0]:.2f} ms, PostgreSQL {per[1]:.2f} ms, "
          f"client {per[2]:.2f} ms = {sum(per):.2f} ms (so at most "
          f"{1000 * (os.cpu_count() or 1) / sum(per):.0f}/s with every core free for this)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    print(f"machine            : load average {load[0]:.1f} at the end of the run "
          "(other work on the machine slows both figures)")
    print(f"ledger check       : {check_ledger(url)}")


if __name__ == "__main__":
    main()
