"""The allocation solver: policies, reasons, invariants, and exactness against an independent LP."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from roadtables import table_from
from scipy.optimize import linprog
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import Delaunay

from allocation_svc.roadgraph import RoadGraph
from allocation_svc.roadtable import CLASS_SPEED_KMH, CLOSED, DEGRADED, OPEN, RoadTable
from allocation_svc.solver import Demand, Depot, DepotTable, Plan, Policy, solve

# ---- building road tables ---------------------------------------------------------------------


def random_road_table(rng: np.random.Generator, n: int) -> RoadTable:
    """Road-like: Delaunay + spanning tree + extra edges (mean degree ~2.8), with one-way roads,
    parallel roads, closures and slow sections."""
    pts = rng.random((n, 2)) * 20.0
    tri = Delaunay(pts)
    pairs = set()
    for a, b, c in tri.simplices:
        for u, v in ((a, b), (b, c), (a, c)):
            pairs.add((min(u, v), max(u, v)))
    pairs = np.array(sorted(pairs))
    detour = 1.1 + 0.4 * rng.random(len(pairs))
    length = np.hypot(*(pts[pairs[:, 0]] - pts[pairs[:, 1]]).T) * detour
    mst = minimum_spanning_tree(coo_matrix((length, (pairs[:, 0], pairs[:, 1])), shape=(n, n)))
    in_tree = set(zip(*mst.nonzero(), strict=True))
    tree_idx = [k for k, (a, b) in enumerate(pairs) if (a, b) in in_tree or (b, a) in in_tree]
    rest = [k for k in range(len(pairs)) if k not in set(tree_idx)]
    extra = rng.choice(rest, size=min(len(rest), int(0.4 * n)), replace=False)
    chosen = np.concatenate([tree_idx, extra]).astype(int)
    dup = rng.choice(chosen, size=max(1, n // 30))  # parallel roads, some shorter, some longer
    frm = np.concatenate([pairs[chosen, 0], pairs[dup, 0]])
    to = np.concatenate([pairs[chosen, 1], pairs[dup, 1]])
    km = np.concatenate([length[chosen], length[dup] * rng.uniform(0.7, 1.5, len(dup))])
    m = len(frm)
    classes = np.array(list(CLASS_SPEED_KMH), dtype=object)[rng.integers(0, 6, m)]
    speed = np.where(rng.random(m) < 0.2, rng.uniform(15, 70, m), np.nan)
    status = np.where(rng.random(m) < 0.08, CLOSED, OPEN).astype(np.int8)
    factor = np.ones(m)
    slow = (status == OPEN) & (rng.random(m) < 0.1)
    status[slow] = DEGRADED
    factor[slow] = rng.uniform(0.2, 0.9, slow.sum())
    return RoadTable(
        node_ids=[f"n{i}" for i in range(n)],
        node_lon=pts[:, 0],
        node_lat=pts[:, 1],
        edge_ids=[f"e{k}" for k in range(m)],
        edge_from=frm.astype(np.int32),
        edge_to=to.astype(np.int32),
        length_km=km,
        road_class=classes,
        speed_kmh=speed,
        oneway=rng.random(m) < 0.1,
        status=status,
        speed_factor=factor,
    )


def random_instance(rng: np.random.Generator, n: int, n_depots: int, n_sites: int, items, tight):
    table = random_road_table(rng, n)
    nodes = rng.choice(n, size=n_depots + n_sites, replace=False)
    depots = []
    for k in range(n_depots):
        stock = {i: int(rng.integers(0, 40 if tight else 120)) for i in items if rng.random() < 0.7}
        depots.append(
            Depot(
                code=f"D{k:02d}",
                node=f"n{nodes[k]}",
                status="active" if rng.random() < 0.9 else "planned",
                stock=stock,
                minimum={i: int(rng.integers(0, 20)) for i in items},
                in_incident=bool(rng.random() < 0.3),
            )
        )
    demands = []
    for s in range(n_sites):
        for i in items:
            if rng.random() < 0.8:
                demands.append(
                    Demand(
                        site=f"S{s}",
                        node=f"n{nodes[n_depots + s]}",
                        item=i,
                        quantity=int(rng.integers(1, 150 if tight else 60)),
                        priority=int(rng.integers(1, 4)),
                    )
                )
    return table, depots, demands


# ---- an independent oracle: networkx distances + a linear program -----------------------------


def oracle_minutes(table: RoadTable) -> nx.DiGraph:
    """Fastest-road digraph straight from the table's columns (shares nothing with RoadGraph)."""
    g = nx.DiGraph()
    g.add_nodes_from(range(table.node_count))
    for k in range(table.edge_count):
        if table.status[k] == CLOSED:
            continue
        speed = table.speed_kmh[k]
        if np.isnan(speed):
            speed = CLASS_SPEED_KMH[table.road_class[k]]
        w = table.length_km[k] / speed * 60.0 / table.speed_factor[k]
        a, b = int(table.edge_from[k]), int(table.edge_to[k])
        for u, v in [(a, b)] if table.oneway[k] else [(a, b), (b, a)]:
            if not g.has_edge(u, v) or g[u][v]["weight"] > w:
                g.add_edge(u, v, weight=w)
    return g


def tier(dep: Depot, line: Demand, policy: Policy) -> int:
    """Graded steps away from the site: own township 0, own county 1, elsewhere 2."""
    if policy.kind != "graded" or policy.incident_level in ("I", "II"):
        return 0
    if line.township is not None and dep.township == line.township:
        return 0
    return 1 if line.county is not None and dep.county == line.county else 2


def oracle(table, depots, demands, policy):
    """Per item, the lexicographic optimum by successive LPs (HiGHS): the least unmet demand of
    priority 1, then 2, then 3, then (graded) the fewest tier steps, then the least quantity x
    minutes. Returns unmet per priority, that cost, the largest total met and the tier steps."""
    g = oracle_minutes(table).reverse(copy=True)
    index = {nid: i for i, nid in enumerate(table.node_ids)}
    dist = {
        d.node: nx.single_source_dijkstra_path_length(g, index[d.node], weight="weight")
        for d in demands
    }
    unmet_by_priority, cost, max_met, steps = {1: 0.0, 2: 0.0, 3: 0.0}, 0.0, 0.0, 0.0
    for item in sorted({d.item for d in demands}):
        lines = [d for d in demands if d.item == item]
        caps = []
        for dep in depots:
            have = dep.stock.get(item, 0)
            if policy.keep_min and not dep.in_incident:
                have -= dep.minimum.get(item, 0)
            caps.append(max(have, 0) if dep.status == "active" else 0)
        pairs = []
        for a, dep in enumerate(depots):
            for b, line in enumerate(lines):
                minutes = dist[line.node].get(index[dep.node], math.inf)
                ok = policy.max_minutes is None or minutes <= policy.max_minutes
                if caps[a] > 0 and minutes < math.inf and ok:
                    pairs.append((a, b, minutes, tier(dep, line, policy)))
        nx_, nl = len(pairs), len(lines)
        nv = nx_ + nl  # shipments, then unmet per line
        a_eq = np.zeros((nl, nv))
        a_ub = np.zeros((len(depots), nv))
        for k, (a, b, _, _) in enumerate(pairs):
            a_eq[b, k] = 1.0
            a_ub[a, k] = 1.0
        for b in range(nl):
            a_eq[b, nx_ + b] = 1.0
        b_eq = np.array([line.quantity for line in lines], dtype=float)
        rows, bounds = [a_ub], list(caps)

        def lp(c, rows=rows, bounds=bounds, a_eq=a_eq, b_eq=b_eq):
            res = linprog(c, A_ub=np.vstack(rows), b_ub=np.array(bounds, dtype=float), A_eq=a_eq,
                          b_eq=b_eq, bounds=(0, None), method="highs")
            assert res.status == 0, res.message
            return res.fun

        everything = np.zeros(nv)
        everything[nx_:] = 1.0
        max_met += sum(line.quantity for line in lines) - lp(everything)
        for p in (1, 2, 3):
            c = np.zeros(nv)
            for b, line in enumerate(lines):
                if line.priority == p:
                    c[nx_ + b] = 1.0
            best = lp(c)
            unmet_by_priority[p] += best
            rows.append(c[None, :])  # keep this priority's optimum while optimising the next
            bounds.append(best + 1e-6)
        c = np.zeros(nv)
        for k, (_, _, _, t) in enumerate(pairs):
            c[k] = t
        fewest = lp(c)
        steps += fewest
        rows.append(c[None, :])
        bounds.append(fewest + 1e-6)
        c = np.zeros(nv)
        for k, (_, _, minutes, _) in enumerate(pairs):
            c[k] = minutes
        cost += lp(c)
    return unmet_by_priority, cost, max_met, steps


def unmet_by_priority(plan: Plan, demands) -> dict[int, int]:
    prio = {(d.site, d.item): d.priority for d in demands}
    out = {1: 0, 2: 0, 3: 0}
    for u in plan.unmet:
        out[prio[(u.site, u.item)]] += u.quantity
    return out


CASES = [
    # (seed, nodes, depots, sites, tight, policy)
    *[(s, 40 + 3 * s, 8 + s % 10, 1 + s % 4, s % 2 == 0, Policy()) for s in range(30)],
    *[(100 + s, 300 + 10 * s, 60 + s, 1 + s % 3, s % 3 == 0, Policy()) for s in range(12)],
    *[(200 + s, 60 + 5 * s, 12, 3, s % 2 == 1, Policy(keep_min=True)) for s in range(6)],
    *[(300 + s, 80, 15, 2, s % 2 == 0, Policy(max_minutes=25.0 + 5 * s)) for s in range(6)],
    (400, 120, 20, 4, True, Policy(keep_min=True, max_minutes=40.0)),
    (401, 500, 200, 3, False, Policy(keep_min=True)),
]


@pytest.mark.parametrize(("seed", "n", "n_depots", "n_sites", "tight", "policy"), CASES)
def test_nearest_plan_is_optimal_against_an_lp(seed, n, n_depots, n_sites, tight, policy):
    rng = np.random.default_rng(seed)
    items = ["rice", "water", "tents"][: 2 + seed % 2]
    table, depots, demands = random_instance(rng, n, n_depots, n_sites, items, tight)
    plan = solve(RoadGraph(table, 1), depots, demands, policy)
    want_unmet, want_cost, want_met, _ = oracle(table, depots, demands, policy)
    got_unmet = unmet_by_priority(plan, demands)
    for p in (1, 2, 3):
        assert got_unmet[p] == pytest.approx(want_unmet[p], abs=1e-3), f"priority {p}"
    met = sum(d.quantity for d in demands) - sum(got_unmet.values())
    assert met == pytest.approx(want_met, abs=1e-3)
    assert plan.cost == pytest.approx(want_cost, rel=1e-6, abs=1e-6)


def test_at_least_fifty_optimality_instances():
    assert len(CASES) >= 50


@pytest.mark.parametrize("seed", range(12))
def test_graded_plan_is_optimal_for_its_tiers_against_an_lp(seed):
    rng = np.random.default_rng(500 + seed)
    table, depots, demands = random_instance(rng, 60 + 20 * seed, 6 + 2 * seed, 1 + seed % 4,
                                             ["rice", "water"], seed % 2 == 0)
    town = {f"S{k}": f"T{k % 4}" for k in range(4)}
    demands = [Demand(d.site, d.node, d.item, d.quantity, d.priority, town[d.site],
                      "A" if town[d.site] in ("T0", "T1") else "B") for d in demands]
    depots = [Depot(d.code, d.node, township=f"T{k % 4}", county="A" if k % 4 < 2 else "B",
                    status=d.status, stock=d.stock) for k, d in enumerate(depots)]
    policy = Policy(kind="graded", incident_level="IV")
    plan = solve(RoadGraph(table, 1), depots, demands, policy)
    want_unmet, want_cost, _, want_steps = oracle(table, depots, demands, policy)
    got_unmet = unmet_by_priority(plan, demands)
    for p in (1, 2, 3):
        assert got_unmet[p] == pytest.approx(want_unmet[p], abs=1e-3), f"priority {p}"
    by_code, by_site = {d.code: d for d in depots}, {d.site: d for d in demands}
    steps = sum(tier(by_code[s.from_], by_site[s.to], policy) * s.quantity for s in plan.shipments)
    assert steps == pytest.approx(want_steps, abs=1e-3)
    assert plan.cost == pytest.approx(want_cost, rel=1e-6, abs=1e-6)


# ---- hand-checkable policies ------------------------------------------------------------------

# A line of villages 10 km apart (10 min each): N0 - N1 - N2 - N3 - N4 - N5
LINE = [(i, i + 1, 10.0) for i in range(5)]


def depot(code, node, stock, **kw):
    return Depot(code=code, node=f"N{node}", stock=stock, **kw)


def demand(node, qty, item="rice", priority=2, site=None, **kw):
    return Demand(site=site or f"S{node}", node=f"N{node}", item=item, quantity=qty,
                  priority=priority, **kw)


def test_nearest_depot_with_stock_and_the_reason_names_the_empty_nearer_one():
    g = RoadGraph(table_from(LINE), 1)
    plan = solve(g, [depot("A", 1, {}), depot("B", 3, {"rice": 50})], [demand(0, 20)])
    (s,) = plan.shipments
    assert (s.from_, s.quantity, s.minutes, s.path) == ("B", 20, 30.0, ["N3", "N2", "N1", "N0"])
    assert s.distance_km == 30.0
    assert s.edges == ["E2", "E1", "E0"]
    assert "nearest depot with rice in stock (30 min)" in s.reason
    assert "1 nearer depot had no rice" in s.reason
    assert plan.cost == 600.0
    assert not plan.unmet


def test_split_over_depots_nearest_first():
    g = RoadGraph(table_from(LINE), 1)
    deps = [depot("A", 1, {"rice": 5}), depot("B", 2, {"rice": 5}), depot("C", 5, {"rice": 99})]
    plan = solve(g, deps, [demand(0, 12)])
    got = {s.from_: s.quantity for s in plan.shipments}
    assert got == {"A": 5, "B": 5, "C": 2}
    assert plan.cost == 5 * 10 + 5 * 20 + 2 * 50
    c = next(s for s in plan.shipments if s.from_ == "C")
    assert "A (10 min) fully allocated to other demands" not in c.reason  # A ships here itself


def test_competition_goes_to_the_cheaper_assignment_not_the_greedy_one():
    # M (N2) is nearest to both sites; serving S3 from it first would send E's rice 50 min to S0.
    g = RoadGraph(table_from(LINE), 1)
    deps = [depot("M", 2, {"rice": 50}), depot("E", 5, {"rice": 50})]
    plan = solve(g, deps, [demand(3, 50), demand(0, 50)])
    got = {(s.from_, s.to): s.quantity for s in plan.shipments}
    assert got == {("M", "S0"): 50, ("E", "S3"): 50}
    assert plan.cost == 50 * 20 + 50 * 20
    e = next(s for s in plan.shipments if s.from_ == "E")
    assert "M (10 min) fully allocated to other demands" in e.reason


def test_priority_first_under_shortage():
    g = RoadGraph(table_from(LINE), 1)
    deps = [depot("A", 2, {"rice": 30})]
    plan = solve(g, deps, [demand(1, 30, priority=3), demand(5, 30, priority=1)])
    assert {(s.to, s.quantity) for s in plan.shipments} == {("S5", 30)}
    (u,) = plan.unmet
    assert (u.site, u.quantity, u.reason) == ("S1", 30, "no_stock_in_reach")
    assert "gave all they could" in u.detail


def test_more_demand_met_beats_shorter_minutes():
    # X(N0) -10- A(N1) -5-> Y(N2) -10- B(N3); N1 -> N2 is one-way, so B cannot reach X.
    g = RoadGraph(table_from([(0, 1, 10.0), (1, 2, 5.0), (2, 3, 10.0)], oneway=[1]), 1)
    deps = [depot("A", 1, {"rice": 10}), depot("B", 3, {"rice": 10})]
    plan = solve(g, deps, [demand(2, 10, site="Y", priority=1), demand(0, 10, site="X")])
    assert not plan.unmet
    assert {(s.from_, s.to) for s in plan.shipments} == {("A", "X"), ("B", "Y")}
    assert plan.cost == 200.0


def test_closed_road_leaves_the_site_unmet_with_no_open_road_and_reopening_restores():
    g = RoadGraph(table_from(LINE), 1)
    deps = [depot("B", 4, {"rice": 50})]
    g2 = g.with_events([("E0", "closed", None)])
    plan = solve(g2, deps, [demand(0, 20)])
    assert plan.graph_version == 2
    assert not plan.shipments
    (u,) = plan.unmet
    assert (u.reason, u.quantity) == ("no_open_road", 20)
    assert "no open road reaches the site from any depot" in u.detail
    plan3 = solve(g2.with_events([("E0", "open", 1.0)]), deps, [demand(0, 20)])
    assert not plan3.unmet
    assert plan3.shipments[0].quantity == 20


def test_a_replan_after_a_closure_never_drives_the_closed_road():
    # Two ways from the depot (N3) to the site (N0): N3-N2-N1-N0 (3 min) or N3-N4-N0 (12 min).
    edges = [(0, 1, 1.0), (1, 2, 1.0), (2, 3, 1.0), (3, 4, 6.0), (4, 0, 6.0)]
    g = RoadGraph(table_from(edges), 1)
    deps, lines = [depot("D", 3, {"rice": 9})], [demand(0, 5)]
    first = solve(g, deps, lines).shipments[0]
    assert (first.minutes, first.edges) == (3.0, ["E2", "E1", "E0"])
    after = solve(g.with_events([("E1", "closed", None)]), deps, lines)
    assert after.graph_version == 2
    assert (after.shipments[0].minutes, after.shipments[0].edges) == (12.0, ["E3", "E4"])


def test_beyond_max_minutes_wins_over_no_open_road():
    g = RoadGraph(table_from(LINE + [(6, 7, 1.0)]), 1)  # N6-N7 is an island
    deps = [depot("FAR", 5, {"rice": 5}), depot("ISLAND", 7, {"rice": 5})]
    plan = solve(g, deps, [demand(0, 3)], Policy(max_minutes=20))
    assert plan.unmet[0].reason == "beyond_max_minutes"
    plan = solve(g, deps[1:], [demand(0, 3)], Policy(max_minutes=20))
    assert plan.unmet[0].reason == "no_open_road"
    assert "5 rice left at 1 depot(s) with no open road to the site" in plan.unmet[0].detail


def test_keep_min_needs_the_minimum_levels():
    g = RoadGraph(table_from(LINE), 1)
    table = DepotTable.from_depots(g, [depot("A", 1, {"rice": 5})], ["rice"], with_minimum=False)
    with pytest.raises(ValueError):
        solve(g, table, [demand(0, 1)], Policy(keep_min=True))


def test_no_stock_anywhere():
    g = RoadGraph(table_from(LINE), 1)
    plan = solve(g, [depot("A", 1, {"water": 5})], [demand(0, 3)])
    (u,) = plan.unmet
    assert u.reason == "no_stock_in_reach"
    assert "no depot in reach holds rice" in u.detail


def test_max_minutes_excludes_far_depots_and_says_so():
    g = RoadGraph(table_from(LINE), 1)
    deps = [depot("A", 1, {"rice": 5}), depot("C", 5, {"rice": 99})]
    plan = solve(g, deps, [demand(0, 12)], Policy(max_minutes=30))
    assert [(s.from_, s.quantity) for s in plan.shipments] == [("A", 5)]
    (u,) = plan.unmet
    assert (u.quantity, u.reason) == (7, "beyond_max_minutes")
    assert "nearest C (50 min)" in u.detail


def test_keep_min_holds_back_depots_outside_the_incident_only():
    g = RoadGraph(table_from(LINE), 1)
    deps = [
        depot("A", 1, {"rice": 10}, minimum={"rice": 10}),
        depot("B", 2, {"rice": 10}, minimum={"rice": 4}),
        depot("I", 3, {"rice": 10}, minimum={"rice": 10}, in_incident=True),
        depot("F", 5, {"rice": 100}, minimum={"rice": 10}),
    ]
    plan = solve(g, deps, [demand(0, 30)], Policy(keep_min=True))
    got = {s.from_: s.quantity for s in plan.shipments}
    assert got == {"B": 6, "I": 10, "F": 14}
    f = next(s for s in plan.shipments if s.from_ == "F")
    assert "A (10 min) held back by keep_min" in f.reason
    no_keep = solve(g, deps, [demand(0, 30)], Policy(keep_min=False))
    assert {s.from_: s.quantity for s in no_keep.shipments} == {"A": 10, "B": 10, "I": 10}


def test_keep_min_shortage_detail():
    g = RoadGraph(table_from(LINE), 1)
    deps = [depot("A", 1, {"rice": 10}, minimum={"rice": 8})]
    plan = solve(g, deps, [demand(0, 5)], Policy(keep_min=True))
    (u,) = plan.unmet
    assert (u.quantity, u.reason) == (3, "no_stock_in_reach")
    assert "8 held back by keep_min at 1 depot(s)" in u.detail


def test_non_active_warehouses_never_send():
    g = RoadGraph(table_from(LINE), 1)
    deps = [depot("A", 1, {"rice": 50}, status="under_construction"), depot("B", 3, {"rice": 50})]
    plan = solve(g, deps, [demand(0, 20)])
    assert [s.from_ for s in plan.shipments] == ["B"]
    assert "A (10 min) not active" in plan.shipments[0].reason
    plan = solve(g, deps[:1], [demand(0, 20)])
    assert plan.unmet[0].reason == "no_stock_in_reach"
    assert "50 at 1 depot(s) not active" in plan.unmet[0].detail


def test_graded_fills_from_own_township_then_county_then_prefecture():
    g = RoadGraph(table_from(LINE), 1)
    deps = [
        depot("OTHER-TOWN", 1, {"rice": 10}, township="T2", county="C1"),
        depot("OTHER-COUNTY", 2, {"rice": 10}, township="T9", county="C9"),
        depot("OWN-TOWN", 4, {"rice": 6}, township="T1", county="C1"),
        depot("COUNTY", 5, {"rice": 5}, township="T3", county="C1"),
    ]
    site = demand(0, 20, township="T1", county="C1")
    plan = solve(g, deps, [site], Policy(kind="graded", incident_level="III"))
    got = {s.from_: s.quantity for s in plan.shipments}
    # own township first (6), then the county's 15 (OTHER-TOWN 10 and COUNTY 5 of 14 needed)
    assert got == {"OWN-TOWN": 6, "OTHER-TOWN": 10, "COUNTY": 4}
    own = next(s for s in plan.shipments if s.from_ == "OWN-TOWN")
    assert own.reason.startswith("own-township tier: ")
    assert "OTHER-COUNTY (20 min) outside the own-township tier" in own.reason
    bigger = solve(g, deps, [demand(0, 30, township="T1", county="C1")], Policy(kind="graded"))
    got = {s.from_: s.quantity for s in bigger.shipments}
    assert got == {"OWN-TOWN": 6, "OTHER-TOWN": 10, "COUNTY": 5, "OTHER-COUNTY": 9}
    far = next(s for s in bigger.shipments if s.from_ == "OTHER-COUNTY")
    assert far.reason.startswith("prefecture tier: ")
    nearest = solve(g, deps, [site], Policy(kind="graded", incident_level="II"))
    assert {s.from_: s.quantity for s in nearest.shipments} == {
        "OTHER-TOWN": 10,
        "OTHER-COUNTY": 10,
    }
    assert nearest.cost < plan.cost


def test_graded_priority_still_comes_first():
    g = RoadGraph(table_from(LINE), 1)
    deps = [depot("T1", 1, {"rice": 10}, township="T1", county="C")]
    lines = [
        demand(0, 10, priority=3, township="T1", county="C"),
        demand(4, 10, priority=1, township="T4", county="C"),
    ]
    plan = solve(g, deps, lines, Policy(kind="graded"))
    assert [(s.to, s.quantity) for s in plan.shipments] == [("S4", 10)]


def test_several_items_and_lines_are_independent_and_merged_per_depot():
    g = RoadGraph(table_from(LINE), 1)
    deps = [depot("A", 1, {"rice": 10, "water": 3}), depot("B", 2, {"water": 10})]
    lines = [
        demand(0, 4, priority=1),
        demand(0, 4, priority=3),
        demand(0, 5, item="water"),
    ]
    plan = solve(g, deps, lines)
    got = sorted((s.from_, s.item, s.quantity) for s in plan.shipments)
    assert got == [("A", "rice", 8), ("A", "water", 3), ("B", "water", 2)]


def test_depot_table_input_gives_the_same_plan():
    g = RoadGraph(table_from(LINE), 1)
    deps = [depot("A", 1, {"rice": 5}), depot("B", 2, {"rice": 5}), depot("C", 5, {"rice": 9})]
    lines = [demand(0, 12), demand(3, 4)]
    table = DepotTable.from_depots(g, deps, ["rice", "tents"])
    a, b = solve(g, table, lines), solve(g, deps, lines)
    assert (a.shipments, a.unmet, a.cost) == (b.shipments, b.unmet, b.cost)


def test_depot_without_a_road_node_cannot_send():
    g = RoadGraph(table_from(LINE), 1)
    plan = solve(g, [Depot("X", None, stock={"rice": 9}), Depot("Y", "nowhere")], [demand(0, 1)])
    assert plan.unmet[0].reason == "no_open_road"


@pytest.mark.parametrize(
    ("policy", "line"),
    [
        (Policy(kind="fastest"), demand(0, 1)),
        (Policy(max_minutes=0), demand(0, 1)),
        (Policy(incident_level="V"), demand(0, 1)),
        (Policy(), demand(0, 0)),
        (Policy(), demand(0, 1, priority=4)),
    ],
)
def test_bad_input_is_refused(policy, line):
    with pytest.raises(ValueError):
        solve(RoadGraph(table_from(LINE), 1), [], [line], policy)


def test_unknown_site_node_is_a_key_error():
    with pytest.raises(KeyError):
        solve(RoadGraph(table_from(LINE), 1), [], [Demand("S", "N99", "rice", 1)])


def test_searches_reach_only_as_far_as_needed_and_the_cache_serves_the_next_plan():
    rng = np.random.default_rng(7)
    table = random_road_table(rng, 2000)
    g = RoadGraph(table, 1)
    nodes = rng.choice(2000, size=1001, replace=False)
    deps = [Depot(f"D{k}", f"n{nodes[k]}", stock={"rice": 50}) for k in range(1000)]
    lines = [Demand("S", f"n{nodes[1000]}", "rice", 60)]
    plan = solve(g, deps, lines)
    assert not plan.unmet
    tree = g.cache.get((1, int(nodes[1000])))
    assert tree is not None and not tree.complete  # a bounded search sufficed
    assert np.isfinite(tree.minutes).sum() < 2000
    again = solve(g, deps, lines)
    assert again.stats["searches"] == 0
    assert again.cost == plan.cost


# ---- invariants, by hypothesis -----------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(16, 150),
    n_depots=st.integers(1, 10),
    n_sites=st.integers(1, 4),
    tight=st.booleans(),
    keep_min=st.booleans(),
    graded=st.booleans(),
    max_minutes=st.one_of(st.none(), st.floats(5, 200)),
)
def test_plan_invariants(seed, n, n_depots, n_sites, tight, keep_min, graded, max_minutes):
    rng = np.random.default_rng(seed)
    items = ["rice", "water"]
    table, depots, demands = random_instance(rng, n, n_depots, n_sites, items, tight)
    demands = [
        Demand(d.site, d.node, d.item, d.quantity, d.priority, f"T{seed % 3}", "C")
        for d in demands
    ]
    depots = [
        Depot(d.code, d.node, township=f"T{k % 3}", county="C" if k % 2 else "X",
              status=d.status, stock=d.stock, minimum=d.minimum, in_incident=d.in_incident)
        for k, d in enumerate(depots)
    ]
    graph = RoadGraph(table, 3)
    policy = Policy("graded" if graded else "nearest", max_minutes, keep_min, "III")
    plan = solve(graph, depots, demands, policy)
    by_code = {d.code: d for d in depots}
    sent: dict[tuple[str, str], int] = {}
    for s in plan.shipments:
        dep = by_code[s.from_]
        assert dep.status == "active"
        assert s.quantity > 0
        sent[(s.from_, s.item)] = sent.get((s.from_, s.item), 0) + s.quantity
        if max_minutes is not None:
            assert s.minutes <= max_minutes
        route = graph.route(dep.node, next(d.node for d in demands if d.site == s.to))
        assert s.minutes == pytest.approx(route.minutes, rel=1e-12)
        edge = {e: k for k, e in enumerate(table.edge_ids)}
        assert all(table.status[edge[e]] != CLOSED for e in s.edges)
        assert s.path[0] == dep.node and len(s.edges) == len(s.path) - 1
    for (code, item), q in sent.items():
        dep = by_code[code]
        limit = dep.stock.get(item, 0)
        if keep_min and not dep.in_incident:
            limit -= dep.minimum.get(item, 0)
        assert q <= limit
    want: dict[tuple[str, str], int] = {}
    for d in demands:
        want[(d.site, d.item)] = want.get((d.site, d.item), 0) + d.quantity
    got: dict[tuple[str, str], int] = {}
    for s in plan.shipments:
        got[(s.to, s.item)] = got.get((s.to, s.item), 0) + s.quantity
    for u in plan.unmet:
        assert u.quantity > 0
        got[(u.site, u.item)] = got.get((u.site, u.item), 0) + u.quantity
    assert got == want
    assert plan.cost == pytest.approx(sum(s.quantity * s.minutes for s in plan.shipments))
