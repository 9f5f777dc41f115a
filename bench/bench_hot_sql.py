"""One hot balance below the HTTP layer: how long a movement holds the balance's row lock.

16 threads post an issue and a receipt of one unit of one balance, alternately, through the
ledger itself (`ledger.post_movement` in a unit of work, with the key row a signed call writes,
as `shared.web.run_command` does), on PostgreSQL; then 16 connections loop a bare
`UPDATE ... RETURNING` and a commit on the same row, the floor (as in bench_speed.py). No Flask,
no gateway, no HTTP: what is left is the database, the driver and SQLAlchemy, so the ratio shows
how much of the floor the movement's statements leave, not the services' CPU.

Run it in two checkouts to compare two ways of writing a movement (the script imports the
ledger of the checkout it runs in):

    .venv/bin/python bench/bench_hot_sql.py [--seconds 10] [--threads 16]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from bench_speed import libpq, pct
from sqlalchemy import create_engine, insert, text

from inventory_svc import catalog, ledger
from inventory_svc.models import idempotency
from shared.auth import Identity
from shared.db import Database
from shared.migrate import upgrade

ADMIN = Identity("bench", "admin")
START = 1_000_000_000


def run_threads(count: int, seconds: float, step) -> dict:
    """`step(index, n)` looped by `count` threads for `seconds`; rate, latencies, client CPU."""
    barrier = threading.Barrier(count + 1)
    deadline = [0.0]
    done = [0] * count
    latencies: list[list[float]] = [[] for _ in range(count)]

    def loop(index: int) -> None:
        barrier.wait()
        n = 0
        while time.perf_counter() < deadline[0]:
            started = time.perf_counter()
            step(index, n)
            latencies[index].append(time.perf_counter() - started)
            n += 1
        done[index] = n

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    cpu = time.process_time()
    deadline[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = [x for lat in latencies for x in lat]
    total = sum(done)
    return {"rate": total / elapsed, "calls": total, "p50_ms": 1e3 * pct(every, 50),
            "p99_ms": 1e3 * pct(every, 99),
            "client_cpu_ms": 1e3 * (time.process_time() - cpu) / max(1, total)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    name = f"emsupply_hotsql_{uuid.uuid4().hex[:6]}"
    admin = create_engine(f"{args.pg}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{args.pg}/{name}"
    try:
        upgrade("inventory_svc", url)
        db = Database(url, pool_size=args.threads + 2)
        with db.unit_of_work() as session:
            catalog.create_warehouse(session, ADMIN, {"code": "QDN", "name": "QDN",
                                                      "level": "prefecture"})
            catalog.create_item(session, ADMIN, {"sku": "TENT", "name": "Tent", "unit": "piece",
                                                 "category": "shelter"})
        with db.unit_of_work() as session:
            ledger.post_movement(session, ADMIN, {"warehouse": "QDN", "item": "TENT",
                                                  "kind": "receipt", "quantity": START})

        def movement(index: int, n: int) -> None:
            kind = "issue" if n % 2 == 0 else "receipt"
            with db.unit_of_work() as session:
                ledger.post_movement(session, ADMIN, {"warehouse": "QDN", "item": "TENT",
                                                      "kind": kind, "quantity": 1})
                session.execute(insert(idempotency).values(
                    key=f"sig:{index}:{n}", fingerprint="bench", status=201, body="{}",
                    created_at=datetime.now(UTC)))

        moved = run_threads(args.threads, args.seconds, movement)
        with db.reading() as session:
            on_hand, lines, total = session.execute(text(
                "SELECT s.on_hand, (SELECT count(*) FROM movements), "
                "(SELECT sum(quantity) FROM movements) FROM stock s")).one()
        books = on_hand == total and lines == moved["calls"] + 1
        db.dispose()

        conninfo = libpq(url)
        local = threading.local()

        def bare(index: int, n: int) -> None:
            if not hasattr(local, "conn"):
                local.conn = psycopg.connect(conninfo)
            local.conn.execute("UPDATE stock SET on_hand = on_hand + %s WHERE id = 1 "
                               "RETURNING on_hand", (1 if n % 2 else -1,)).fetchone()
            local.conn.commit()

        floor = run_threads(args.threads, args.seconds, bare)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    head = subprocess.run(["git", "log", "-1", "--format=%h %s"], capture_output=True,
                          text=True, cwd=Path(__file__).parent).stdout.strip()[:70]
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"code: {head}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for label, m in (("movements through the ledger", moved), ("bare UPDATE ... RETURNING", floor)):
        print(f"{label:32} {m['rate']:7.0f}/s  p50 {m['p50_ms']:6.2f} ms  p99 "
              f"{m['p99_ms']:6.2f} ms  client CPU {m['client_cpu_ms']:.2f} ms a call "
              f"({args.threads} threads, {args.seconds:g} s)")
    print(f"ledger / bare {moved['rate'] / floor['rate']:.2f}; books "
          f"{'OK' if books else 'WRONG'} (on hand {on_hand}, ledger sum {total}, {lines} lines)")
    return 0 if books else 1


if __name__ == "__main__":
    sys.exit(main())
