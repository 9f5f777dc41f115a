"""Plans driven, not teleported (issue 9): the trips MILP against brute force on small instances,
the packing of shipments into vehicles, the backbone's tiers, and the seed's storm within the
issue's aims."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from roadtables import table_from
from stormcase import storm, storm_townships

from allocation_svc.roadgraph import RoadGraph
from allocation_svc.solver import Demand, Depot, Policy, solve
from allocation_svc.trips import Driving, ItemProblem, Load, Vehicle, optimise, pack
from emsupply import dataset

EXACT = Driving(rel_gap=0.0, time_limit_s=30.0)


# ---- the MILP against brute force ---------------------------------------------------------------

def splits(total: int, caps: list[int]):
    """Every way to send `total` from candidates with these caps."""
    if not caps:
        if total == 0:
            yield ()
        return
    for first in range(min(total, caps[0]) + 1):
        for rest in splits(total - first, caps[1:]):
            yield (first, *rest)


def random_problems(rng: np.random.Generator, n_depots: int, sites: list[str]):
    """One or two items over a few depots; tiered or not; quantities small enough to enumerate."""
    problems = []
    for k in range(int(rng.integers(1, 3))):
        lines = sites[: int(rng.integers(1, len(sites) + 1))]
        cost = rng.integers(5, 60, size=(n_depots, len(lines))).astype(float)
        cost[rng.random(cost.shape) < 0.15] = math.inf
        cap = rng.integers(0, 6, size=n_depots)
        tier = rng.integers(0, 3, size=(n_depots, 1)).repeat(len(lines), axis=1).astype(float) \
            if rng.random() < 0.6 else None
        met, flow, left = [], [], cap.copy()
        for j in range(len(lines)):  # some feasible flow: what the flow solver would have given
            want = int(rng.integers(1, 5))
            f: dict[int, int] = {}
            order = np.argsort(cost[:, j] + (0 if tier is None else 1000 * tier[:, j]))
            for c in order.tolist():
                if want and math.isfinite(cost[c, j]) and left[c] > 0:
                    q = min(want, int(left[c]))
                    f[c] = q
                    left[c] -= q
                    want -= q
            met.append(sum(f.values()))
            flow.append(f)
        problems.append(ItemProblem(
            item=f"i{k}", weight_kg=float(rng.choice([0.0, 1.0, 3.0, 4.5])), sites=lines,
            met=met, cand=np.arange(n_depots), cost=cost, tier=tier, cap=cap, flow=flow))
    return problems


def model_cost(problems, flows, capacity, trip_cost) -> float:
    """The MILP's own objective of a choice: minutes, and per depot and site the fewest trips
    its load needs (one for weightless goods)."""
    minutes, load, used = 0.0, Counter(), set()
    for prob, lines in zip(problems, flows, strict=True):
        for j, f in enumerate(lines):
            for c, q in f.items():
                if q:
                    minutes += prob.cost[c, j] * q
                    pair = (int(prob.cand[c]), prob.sites[j])
                    load[pair] += prob.weight_kg * q
                    used.add(pair)
    trips = sum(max(1, math.ceil(load[p] / capacity[p[0]] - 1e-9)) for p in used)
    return minutes + trip_cost * trips


def brute_force(problems, capacity, trip_cost) -> float:
    per_line = []
    for p, prob in enumerate(problems):
        for j, _ in enumerate(prob.sites):
            ok = [c for c in range(len(prob.cand)) if math.isfinite(prob.cost[c, j])]
            per_line.append((p, j, ok, [list(s) for s in splits(
                prob.met[j], [int(prob.cap[c]) for c in ok])]))
    best = math.inf
    for choice in itertools.product(*(options for *_, options in per_line)):
        flows = [[{} for _ in prob.met] for prob in problems]
        for (p, j, ok, _), split in zip(per_line, choice, strict=True):
            flows[p][j] = dict(zip(ok, split, strict=True))
        if not feasible(problems, flows):
            continue
        best = min(best, model_cost(problems, flows, capacity, trip_cost))
    return best


def feasible(problems, flows) -> bool:
    for prob, lines in zip(problems, flows, strict=True):
        sent = Counter()
        for f in lines:
            sent.update(f)
        if any(q > prob.cap[c] for c, q in sent.items()):
            return False
        if prob.tier is not None:
            drawn = sum(prob.tier[c, j] * q for j, f in enumerate(prob.flow) for c, q in f.items())
            now = sum(prob.tier[c, j] * q for j, f in enumerate(lines) for c, q in f.items())
            if now > drawn + 1e-9:
                return False
    return True


@pytest.mark.parametrize("seed", range(40))
def test_the_trips_milp_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_depots = int(rng.integers(2, 4))
    problems = random_problems(rng, n_depots, ["s1", "s2"])
    capacity = rng.choice([2.0, 5.0, 9.0], size=n_depots)
    trip_cost = float(rng.choice([0.0, 15.0, 80.0]))
    driving = Driving(trip_cost=trip_cost, rel_gap=0.0, time_limit_s=30.0)
    result = optimise(problems, capacity, driving)
    assert result is not None and result.exact
    assert feasible(problems, result.flows)
    for prob, lines in zip(problems, result.flows, strict=True):
        assert [sum(f.values()) for f in lines] == prob.met  # every line keeps what it got
    best = brute_force(problems, capacity, trip_cost)
    got = model_cost(problems, result.flows, capacity, trip_cost)
    assert got == pytest.approx(best)
    assert result.bound <= best + 1e-6


def test_the_milp_declines_a_model_over_its_limit():
    rng = np.random.default_rng(1)
    problems = random_problems(rng, 3, ["s1", "s2"])
    assert optimise(problems, np.full(3, 5.0), Driving(exact_limit=2)) is None


# ---- packing ------------------------------------------------------------------------------------

LORRY, PICKUP = Vehicle("lorry", 10_000.0), Vehicle("pickup", 1_000.0)


def test_pack_fills_vehicles_heaviest_first_and_never_overloads():
    loads = [Load("A", "S", "TENT", 300, 40.0, 30.0, ["a", "s"]),  # 35 kg: 10,500 kg
             Load("A", "S", "WATER", 1000, 40.0, 30.0, ["a", "s"]),  # 0.6 kg: 600 kg
             Load("B", "S", "TENT", 20, 10.0, 8.0, ["b", "s"])]  # 700 kg on a pickup
    weight = {"TENT": 35.0, "WATER": 0.6}
    trips = pack(loads, {"A": LORRY, "B": PICKUP}.__getitem__, weight)
    from_a = [t for t in trips if t.from_ == "A"]
    assert len(from_a) == 2  # 11,100 kg in two 10 t lorries
    assert all(t.weight_kg <= 10_000 for t in from_a)
    carried = Counter()
    for t in from_a:
        assert t.weight_kg == pytest.approx(sum(weight[i] * q for i, q in t.lines))
        carried.update(dict(t.lines))
    assert carried == {"TENT": 300, "WATER": 1000}
    (b,) = [t for t in trips if t.from_ == "B"]
    assert (b.vehicle, b.lines, b.weight_kg, b.minutes, b.path) == (
        "pickup", [("TENT", 20)], 700.0, 10.0, ["b", "s"])


def test_a_unit_heavier_than_its_vehicle_goes_alone_and_weightless_goods_ride_along():
    loads = [Load("A", "S", "GENSET", 2, 5.0, 4.0, []), Load("A", "S", "KIT", 9, 5.0, 4.0, [])]
    trips = pack(loads, lambda code: PICKUP, {"GENSET": 1_500.0})
    assert sorted(t.lines for t in trips) == [[("GENSET", 1)], [("GENSET", 1), ("KIT", 9)]]


# ---- the backbone -------------------------------------------------------------------------------

# N0 is the site; depots further along a line, 10 minutes a node.
LINE = [(i, i + 1, 10.0) for i in range(9)]


def depot(code, node, rice, level, township=None, county="C1", **kw):
    return Depot(code=code, node=f"N{node}", stock={"rice": rice}, level=level,
                 township=township, county=county, **kw)


def site(quantity, **kw):
    return Demand(site="S", node="N0", item="rice", quantity=quantity, township="T1",
                  county="C1", unit_weight_kg=10.0, **kw)


BACKBONE = [
    depot("OUT-VILLAGE", 1, 50, "village", township="T2"),
    depot("OTHER-TOWN", 2, 50, "township", township="T2"),
    depot("IN-VILLAGE", 3, 4, "village", township="T1", in_incident=True),
    depot("PREFECTURE", 4, 500, "prefecture", county=None),
    depot("OTHER-COUNTY", 5, 500, "county", county="C2"),
    depot("OWN-COUNTY", 8, 30, "county"),
]


def sources(plan) -> dict[str, int]:
    got = Counter()
    for s in plan.shipments:
        got[s.from_] += s.quantity
    return dict(got)


def test_backbone_draws_the_incident_then_its_county_then_the_prefecture_never_outside_villages():
    g = RoadGraph(table_from(LINE), 1)
    plan = solve(g, BACKBONE, [site(60)], Policy(kind="backbone"))
    assert sources(plan) == {"IN-VILLAGE": 4, "OWN-COUNTY": 30, "PREFECTURE": 26}
    reasons = {s.from_: s.reason for s in plan.shipments}
    assert reasons["IN-VILLAGE"].startswith("incident townships tier")
    assert reasons["OWN-COUNTY"].startswith("own county depot tier")
    assert reasons["PREFECTURE"].startswith("prefecture backbone tier")
    more = solve(g, BACKBONE, [site(1_100)], Policy(kind="backbone"))
    assert "OUT-VILLAGE" not in sources(more)  # its village's own reserve
    assert sources(more)["OTHER-TOWN"] == 50  # township centres come after the backbone
    (unmet,) = more.unmet
    assert unmet.quantity == 1_100 - 4 - 30 - 500 - 500 - 50
    assert "village point(s) outside the incident" in unmet.detail
    asked = solve(g, BACKBONE, [site(1_100)], Policy(kind="backbone", outside_villages=True))
    assert sources(asked)["OUT-VILLAGE"] == 16 and not asked.unmet


def test_levels_one_and_two_open_the_whole_prefecture_after_the_incident():
    g = RoadGraph(table_from(LINE), 1)
    plan = solve(g, BACKBONE, [site(60)], Policy(kind="backbone", incident_level="II"))
    assert sources(plan) == {"IN-VILLAGE": 4, "OTHER-TOWN": 50, "PREFECTURE": 6}
    assert "OUT-VILLAGE" not in sources(plan)


def test_driving_prefers_one_lorry_to_several_small_loads():
    g = RoadGraph(table_from(LINE), 1)
    depots = [depot("NEAR-COUNTY", 3, 100, "county", county="C2"),
              depot("PREFECTURE", 4, 500, "prefecture", county=None)]
    demands = [site(400)]
    plain = solve(g, depots, demands, Policy(kind="backbone", driving=Driving(optimise=False)))
    driven = solve(g, depots, demands, Policy(kind="backbone", driving=EXACT))
    assert sources(plain) == {"NEAR-COUNTY": 100, "PREFECTURE": 300}
    assert len(plain.trips) == 2
    assert plain.objective == plain.cost + 2 * 3000.0 == 21_000.0
    # both are the prefecture backbone tier; one lorry of 4 t beats two part-loads
    assert sources(driven) == {"PREFECTURE": 400} and len(driven.trips) == 1
    (trip,) = driven.trips
    assert (trip.vehicle, trip.weight_kg, trip.lines) == ("lorry", 4_000.0, [("rice", 400)])
    assert driven.objective < plain.objective
    assert driven.bound <= driven.objective and driven.gap == pytest.approx(
        (driven.objective - driven.bound) / driven.objective)
    near = next(s for s in driven.shipments if s.from_ == "PREFECTURE")
    assert "NEAR-COUNTY (30 min) has spare, left out for fewer trips" in near.reason


# ---- the seed's storm ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qdn() -> dataset.DataSet:
    return dataset.qiandongnan()


def test_the_storm_plan_is_one_a_commander_would_sign(qdn):
    graph, table, demands = storm(qdn)
    plan = solve(graph, table, demands, Policy(kind="backbone", keep_min=True, driving=Driving()))
    level = dict(zip(table.codes, table.level.tolist(), strict=True))
    towns = {t["code"] for t in storm_townships(qdn)}
    used = {s.from_ for s in plan.shipments}
    assert not plan.unmet
    assert len(used) <= 60
    outside = [c for c in used if level[c] == "village" and not any(
        c.startswith(t + "-") for t in towns)]
    assert outside == []
    assert {level[c] for c in used} >= {"prefecture", "county"}
    assert len(plan.trips) <= 250
    assert max(t.minutes for t in plan.trips) <= 5 * 60
    assert all(t.weight_kg <= t.capacity_kg for t in plan.trips)
    assert plan.bound is not None and plan.gap < 0.02
    shipped = Counter()
    for s in plan.shipments:
        shipped[(s.to, s.item)] += s.quantity
    carried = Counter()
    for t in plan.trips:
        for item, quantity in t.lines:
            carried[(t.to, item)] += quantity
    assert carried == shipped == Counter({(d.site, d.item): d.quantity for d in demands})


# ---- configuration ------------------------------------------------------------------------------

def test_the_vehicles_and_the_trip_cost_are_settings(tmp_path):
    from allocation_svc import driving
    from shared.config import ConfigError, load_settings

    env = {"EMSUPPLY_SECRET": "s" * 16, "EMSUPPLY_TRIP_COST": "1200",
           "EMSUPPLY_VEHICLES": "township=lorry:5000, village=van:1500"}
    chosen = driving(load_settings("allocation", env, tmp_path))
    assert chosen.vehicle("township") == Vehicle("lorry", 5000.0)
    assert chosen.vehicle("village") == Vehicle("van", 1500.0)
    assert chosen.vehicle("county") == Vehicle("lorry", 10_000.0)
    assert chosen.trip_cost == 1200.0
    with pytest.raises(ConfigError, match=r"^EMSUPPLY_VEHICLES: 'town=van' must be level="):
        load_settings("allocation", {**env, "EMSUPPLY_VEHICLES": "town=van"}, tmp_path)
    with pytest.raises(ConfigError, match="unknown depot level 'town'"):
        driving(load_settings("allocation", {**env, "EMSUPPLY_VEHICLES": "town=van:9"}, tmp_path))
