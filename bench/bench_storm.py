"""The seed's storm (issue 9): three Rongjiang townships, 9,690 people to resettle for 3 days,
demands from the items' norms, on the Qiandongnan data set with its own stock. Every policy side
by side in one run, the solver alone and the whole plan request through HTTP (gunicorn, SQLite):

- `backbone` (the default: the incident's townships, their county depot, the prefecture and
  other county depots, township centres; depots outside the incident keep their min; trips
  optimised by HiGHS),
- `graded` and `nearest` (today's figure: the scenario planned `graded`; both are packed into
  trips as they are, not re-optimised).

Figures per policy: time, source depots (by level), village points outside the incident,
trips (by vehicle), the longest trip, nothing unmet, the objective's gap to its bound.

    .venv/bin/python bench/bench_storm.py [--repeat 5] [--no-http]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_allocation import served

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from stormcase import storm, storm_townships  # noqa: E402

from allocation_svc.solver import Policy, solve  # noqa: E402
from allocation_svc.trips import Driving  # noqa: E402
from emsupply import dataset  # noqa: E402
from emsupply.scenario import DAYS, POPULATION  # noqa: E402

POLICIES = {
    "backbone": Policy(kind="backbone", keep_min=True, driving=Driving()),
    "backbone, no trips": Policy(kind="backbone", keep_min=True),
    "graded": Policy(kind="graded", driving=Driving()),
    "nearest": Policy(kind="nearest", driving=Driving()),
}
HTTP = {"backbone": {}, "graded": {"policy": "graded"}, "nearest": {"policy": "nearest"}}


def in_process(data: dataset.DataSet, repeat: int) -> dict:
    graph, table, demands = storm(data)
    level = dict(zip(table.codes, table.level.tolist(), strict=True))
    towns = [t["code"] for t in storm_townships(data)]
    out = {}
    for name, policy in POLICIES.items():
        plan = solve(graph, table, demands, policy)  # warms the trees
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            plan = solve(graph, table, demands, policy)
            times.append(time.perf_counter() - started)
        used = {s.from_ for s in plan.shipments}
        out[name] = {
            "solve_s": statistics.median(times),
            "sources": len(used),
            "by_level": dict(Counter(level[c] for c in used)),
            "outside_villages": sum(level[c] == "village" and not c.startswith(
                tuple(t + "-" for t in towns)) for c in used),
            "shipments": len(plan.shipments),
            "trips": len(plan.trips),
            "vehicles": dict(Counter(t.vehicle for t in plan.trips)),
            "longest_trip_min": max((t.minutes for t in plan.trips), default=0.0),
            "unmet": sum(u.quantity for u in plan.unmet),
            "cost": plan.cost, "objective": plan.objective, "bound": plan.bound,
            "gap": plan.gap, "milp_variables": plan.stats.get("trip_variables", 0),
        }
    out["_instance"] = {"demand_lines": len(demands), "depots": len(table),
                        "tonnes": sum(d.quantity * d.unit_weight_kg for d in demands) / 1000}
    return out


def through_http(data: dataset.DataSet, repeat: int) -> dict:
    """The whole plan request (snapshot, solve, trips, record, hold), in-process and through
    gunicorn; each plan is cancelled (not timed) to free its stock for the next."""
    from emsupply import seed as seeding
    from emsupply import supervisor
    from emsupply.suite import LocalSuite

    directory = Path(tempfile.mkdtemp(prefix="emsupply-storm-"))
    env = {**os.environ, "EMSUPPLY_DATA_DIR": str(directory)}
    supervisor.prepare(directory, ("inventory", "allocation"), env)
    local = LocalSuite(directory)
    seeding.seed(local, data)
    sites = [{"id": t["code"], "warehouse": t["code"], "population": people}
             for t, people in zip(storm_townships(data), POPULATION, strict=True)]
    incident = local.call("POST", "/api/v1/incidents",
                          {"type": "rainstorm", "level": "IV", "sites": sites})
    path = f"/api/v1/incidents/{incident['id']}/allocations"

    def timed(call, extra: dict) -> float:
        started = time.perf_counter()
        plan = call("POST", path, {"population_days": DAYS, **extra})
        elapsed = time.perf_counter() - started
        assert not plan["unmet"], plan["unmet"][:3]
        call("POST", f"/api/v1/allocations/{plan['id']}/cancel")
        return elapsed

    out: dict[str, dict] = {name: {} for name in HTTP}
    for name, extra in HTTP.items():
        timed(local.call, extra)
        out[name]["in_process_request_s"] = statistics.median(
            timed(local.call, extra) for _ in range(repeat))
    with served(directory, env) as call:
        for name, extra in HTTP.items():
            timed(call, extra)  # the worker's first load of the graph and trees
            out[name]["http_request_s"] = statistics.median(
                timed(call, extra) for _ in range(repeat))
    return out


def report(solved: dict, http: dict | None) -> None:
    inst = solved.pop("_instance")
    print(f"storm: {inst['demand_lines']} demand lines, {inst['tonnes']:.0f} t, "
          f"{inst['depots']:,} depots")
    head = ("policy", "solve ms", "in-proc req ms", "HTTP ms", "sources", "outside vill.",
            "trips", "longest", "unmet", "gap")
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for name, p in solved.items():
        h = (http or {}).get(name, {})
        row = [name, f"{p['solve_s'] * 1000:.0f}",
               f"{h['in_process_request_s'] * 1000:.0f}" if h else "-",
               f"{h['http_request_s'] * 1000:.0f}" if h else "-",
               f"{p['sources']} {p['by_level']}", str(p["outside_villages"]),
               f"{p['trips']} {p['vehicles']}" if p["trips"] else "-",
               f"{p['longest_trip_min']:.0f} min" if p["trips"] else "-", str(p["unmet"]),
               f"{p['gap']:.2%}" if p["gap"] is not None else "-"]
        print(" | ".join(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-http", action="store_true")
    args = parser.parse_args()
    data = dataset.qiandongnan()
    solved = in_process(data, args.repeat)
    http = None if args.no_http else through_http(data, args.repeat)
    report(solved, http)


if __name__ == "__main__":
    main()
