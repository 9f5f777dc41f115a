"""The national data set's heavy parts in process, side by side for several checkouts (issue 12):
what bench_national.py measures through HTTP, taken apart so that one change at a time shows.

For each checkout given (`--code DIR`, repeated; default this tree), each part in a fresh
Python process of that checkout's own venv, `--rounds` times, the checkouts alternating:

- `graph`: the road graph loaded as a worker loads it (`GraphCache.current`): seconds, RSS
  grown, peak RSS;
- `snapshot`: the inventory's full snapshot as its view makes it (`snapshot.snapshot` in one
  view), then its JSON: seconds each, peak RSS;
- `refresh`: the kept network made from that snapshot's answer (`merged`), then brought up to
  date by small `since` answers (three balances each, two of them new), as each plan does:
  the first and the median of `--refreshes`;
- `check`: what the allocation's safety net asks now, a `since` read with the `digest` (the
  whole network's sums in the database), right after a full read (only on checkouts that have
  it).

It reads copies of bench_national.py's templates (emsupply_national_seeded_*; run that bench
once first), made as emsupply_parts_* and dropped at the end.

    .venv/bin/python bench/bench_national_parts.py --code /tmp/base --code . [--rounds 2]
        [--parts graph,snapshot,refresh]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("graph", "snapshot", "refresh", "check")
PREFIX = "emsupply_parts"

PRELUDE = """
import gc, json, os, statistics, sys, time
def memory():
    found = {}
    for line in open(f"/proc/{os.getpid()}/status"):
        if line.startswith(("VmRSS", "VmHWM")):
            found[line[:5]] = int(line.split()[1]) / 1024
    return found
"""

GRAPH = PRELUDE + """
from allocation_svc.roads import GraphCache
from shared.db import Database
db = Database(sys.argv[1])
before = memory()["VmRSS"]
started = time.perf_counter()
with db.reading() as session:
    graph = GraphCache().current(session)
seconds = time.perf_counter() - started
now = memory()
print(json.dumps({"s": seconds, "grown_mib": now["VmRSS"] - before, "peak_mib": now["VmHWM"],
                  "nodes": graph.node_count}))
"""

SNAPSHOT = PRELUDE + """
from inventory_svc.snapshot import snapshot
from shared.db import Database
db = Database(sys.argv[1])
started = time.perf_counter()
with db.reading(one_view=True) as session:
    answer = snapshot(session, None)
made = time.perf_counter()
body = json.dumps(answer)
print(json.dumps({"s": made - started, "json_s": time.perf_counter() - made,
                  "peak_mib": memory()["VmHWM"], "balances": len(answer["stock"]["item"]),
                  "mib": len(body) / 2**20}))
"""

REFRESH = PRELUDE + """
import random
from allocation_svc.inventory import merged
from inventory_svc.snapshot import snapshot
from shared.db import Database
db = Database(sys.argv[1])
with db.reading(one_view=True) as session:
    answer = snapshot(session, None)
count = len(answer["warehouses"]["code"])
skus = sorted(set(answer["stock"]["item"]))
known = list(zip(answer["stock"]["warehouse"][:1000], answer["stock"]["item"][:1000]))
started = time.perf_counter()
network = merged(None, answer)
full_s = time.perf_counter() - started
del answer
rng, times = random.Random(7), []
for n in range(int(sys.argv[2])):
    rows = [rng.choice(known)] + [(rng.randrange(count), rng.choice(skus)) for _ in range(2)]
    since = {"full": False, "version": str(n), "catalogue": len(skus), "warehouses": None,
             "stock": {"warehouse": [r[0] for r in rows], "item": [r[1] for r in rows],
                       **{name: [n + 1] * 3 for name in ("on_hand", "available", "expired",
                                                         "in_transit", "min", "target")}}}
    started = time.perf_counter()
    network = merged(network, since)
    times.append(time.perf_counter() - started)
print(json.dumps({"full_s": full_s, "first_ms": times[0] * 1e3,
                  "median_ms": statistics.median(times) * 1e3, "peak_mib": memory()["VmHWM"],
                  "rss_mib": memory()["VmRSS"]}))
"""

CHECK = PRELUDE + """
from inventory_svc.snapshot import snapshot
from shared.db import Database
db = Database(sys.argv[1])
with db.reading(one_view=True) as session:
    version = snapshot(session, None)["version"]
started = time.perf_counter()
with db.reading(one_view=True) as session:
    answer = snapshot(session, None, since=version, digest=True)
print(json.dumps({"s": time.perf_counter() - started, "balances": answer["digest"]["balances"]}))
"""

SCRIPTS = {"graph": (GRAPH, "allocation"), "snapshot": (SNAPSHOT, "inventory"),
           "refresh": (REFRESH, "inventory"), "check": (CHECK, "inventory")}


def libpq(pg: str, name: str) -> str:
    return f"{pg}/{name}"


def copies(pg: str) -> dict[str, str]:
    """emsupply_parts_<service> copied from the newest national templates."""
    with psycopg.connect(libpq(pg, "postgres"), autocommit=True) as conn:
        names = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'emsupply_national_seeded_%' "
            "ORDER BY datname")]
        found = {}
        for service in ("inventory", "allocation"):
            template = next((n for n in names if n.endswith("_" + service)), None)
            if template is None:
                sys.exit("no national templates: run bench/bench_national.py once first")
            copy = f"{PREFIX}_{service}"
            conn.execute(f"DROP DATABASE IF EXISTS {copy}")
            conn.execute(f"CREATE DATABASE {copy} TEMPLATE {template}")
            found[service] = f"postgresql+psycopg://{pg.split('://', 1)[1]}/{copy}"
    return found


def drop(pg: str) -> None:
    with psycopg.connect(libpq(pg, "postgres"), autocommit=True) as conn:
        for service in ("inventory", "allocation"):
            conn.execute(f"DROP DATABASE IF EXISTS {PREFIX}_{service}")


def run(code: Path, part: str, url: str, refreshes: int) -> dict:
    script, _ = SCRIPTS[part]
    python = code / ".venv" / "bin" / "python"
    done = subprocess.run([str(python), "-c", textwrap.dedent(script), url, str(refreshes)],
                          cwd=code, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(code)})
    if done.returncode:
        raise RuntimeError(f"{part} in {code}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def has_digest(code: Path) -> bool:
    return "def _digest" in (code / "inventory_svc" / "snapshot.py").read_text()


def commit(code: Path) -> str:
    return subprocess.run(["git", "-C", str(code), "log", "--oneline", "-1"], capture_output=True,
                          text=True, check=False).stdout.strip()[:60]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, action="append",
                        help="a checkout with its .venv (repeat; default this tree)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--refreshes", type=int, default=20)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    args = parser.parse_args(argv)
    codes = [path.resolve() for path in (args.code or [ROOT])]
    parts = [p for p in args.parts.split(",") if p]
    print("command: " + " ".join(sys.argv), flush=True)
    for code in codes:
        print(f"code: {code} at {commit(code)}", flush=True)
    urls = copies(args.pg)
    results: dict[tuple[str, Path], list[dict]] = {}
    try:
        for round_ in range(args.rounds):
            for part in parts:
                for code in codes:
                    if part == "check" and not has_digest(code):
                        continue
                    found = run(code, part, urls[SCRIPTS[part][1]], args.refreshes)
                    results.setdefault((part, code), []).append(found)
                    print(f"round {round_ + 1} {part} {code.name}: {json.dumps(found)}",
                          flush=True)
    finally:
        drop(args.pg)
    print()
    for part in parts:
        for code in codes:
            runs = results.get((part, code))
            if not runs:
                continue
            keys = [k for k, v in runs[0].items() if isinstance(v, float)]
            shown = ", ".join(f"{k} " + "/".join(f"{r[k]:.1f}" for r in runs) for k in keys)
            print(f"{part:9} {commit(code)[:8]}  {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
