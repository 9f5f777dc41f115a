"""The road graph: a CSR snapshot per version, reverse searches, routes, road events, the cache."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from roadtables import table_from

from allocation_svc.roadgraph import ZERO_MINUTES, LRUTreeCache, NoRoute, RoadGraph, SiteTree
from allocation_svc.roadtable import CLASS_SPEED_KMH, CLOSED, OPEN, RoadTable


def random_table(seed: int, n: int) -> RoadTable:
    """A connected ring with random chords, one-way roads, parallel roads and closures."""
    rng = np.random.default_rng(seed)
    ring = [(i, (i + 1) % n) for i in range(n)]
    chords = [tuple(rng.choice(n, 2, replace=False)) for _ in range(n // 2)]
    pairs = ring + chords + ring[: n // 10]  # the last ones are parallel roads
    m = len(pairs)
    status = np.where(rng.random(m) < 0.1, CLOSED, OPEN).astype(np.int8)
    return RoadTable(
        node_ids=[f"v{i}" for i in range(n)],
        node_lon=rng.random(n),
        node_lat=rng.random(n),
        edge_ids=[f"r{k}" for k in range(m)],
        edge_from=np.array([a for a, _ in pairs], dtype=np.int32),
        edge_to=np.array([b for _, b in pairs], dtype=np.int32),
        length_km=rng.uniform(0.5, 20.0, m),
        road_class=np.array(list(CLASS_SPEED_KMH), dtype=object)[rng.integers(0, 6, m)],
        speed_kmh=np.where(rng.random(m) < 0.3, 35.0, np.nan),
        oneway=rng.random(m) < 0.15,
        status=status,
        speed_factor=np.where(rng.random(m) < 0.1, 0.5, 1.0),
    )


def reference_minutes(table: RoadTable, site: int) -> dict[int, float]:
    """networkx from the table's columns (not from RoadGraph): minutes from every node to site."""
    g = nx.DiGraph()
    w = table.minutes()
    for k in range(table.edge_count):
        if np.isfinite(w[k]):
            a, b = int(table.edge_from[k]), int(table.edge_to[k])
            for u, v in [(a, b)] if table.oneway[k] else [(a, b), (b, a)]:
                if not g.has_edge(u, v) or g[u][v]["weight"] > w[k]:
                    g.add_edge(u, v, weight=w[k])
    g.add_nodes_from(range(table.node_count))
    return nx.single_source_dijkstra_path_length(g.reverse(), site)


# A square with a diagonal: N0 -1- N1 -1- N2, N0 -3.5- N3 -1- N2, N1 -5- N3
SQUARE = [(0, 1, 1.0), (1, 2, 1.0), (0, 3, 3.5), (3, 2, 1.0), (1, 3, 5.0)]


def test_route_minutes_distance_path_edges_and_geometry():
    g = RoadGraph(table_from(SQUARE), 7)
    r = g.route("N0", "N2")
    assert (r.minutes, r.distance_km) == (2.0, 2.0)
    assert (r.path, r.edges) == (["N0", "N1", "N2"], ["E0", "E1"])
    assert r.coordinates == [(100.0, 20.0), (101.0, 20.1), (102.0, 20.2)]
    assert r.geometry() == {"type": "LineString", "coordinates": [[100.0, 20.0], [101.0, 20.1],
                                                                  [102.0, 20.2]]}
    assert g.route(3, 0).path == ["N3", "N2", "N1", "N0"]  # 3 min beats the direct 3.5
    assert g.route("N2", "N2").path == ["N2"]


def test_oneway_roads_are_driven_one_way_only():
    g = RoadGraph(table_from([(0, 1, 1.0), (1, 2, 1.0), (2, 0, 10.0)], oneway=[0, 1]), 1)
    assert g.route("N0", "N2").minutes == 2.0
    back = g.route("N2", "N0")
    assert (back.minutes, back.edges) == (10.0, ["E2"])
    g2 = RoadGraph(table_from([(0, 1, 1.0)], oneway=[0]), 1)
    with pytest.raises(NoRoute):
        g2.route("N1", "N0")


def test_parallel_roads_keep_the_cheapest_not_the_sum():
    g = RoadGraph(table_from([(0, 1, 10.0), (1, 0, 4.0), (0, 1, 7.0)]), 1)
    r = g.route("N0", "N1")
    assert (r.minutes, r.edges, r.distance_km) == (4.0, ["E1"], 4.0)
    closed = g.with_events([("E1", "closed", None)])
    r = closed.route("N0", "N1")
    assert (r.minutes, r.edges) == (7.0, ["E2"])
    assert g.route("N0", "N1").minutes == 4.0  # the old version is untouched


def test_zero_length_road_is_a_free_edge_not_a_missing_one():
    g = RoadGraph(table_from([(0, 1, 0.0), (1, 2, 2.0)]), 1)
    r = g.route("N0", "N2")
    assert r.path == ["N0", "N1", "N2"]
    assert r.minutes == pytest.approx(2.0 + ZERO_MINUTES)


def test_degraded_road_is_slower_and_makes_a_new_version():
    g = RoadGraph(table_from(SQUARE), 1)
    slow = g.with_events([("E1", "degraded", 0.25)])  # N1-N2 now 4 min
    assert slow.version == 2
    r = slow.route("N0", "N2")
    assert (r.minutes, r.path) == (4.5, ["N0", "N3", "N2"])  # 3.5 + 1 beats 1 + 4
    assert slow.table.status[1] == 1 and slow.table.speed_factor[1] == 0.25
    assert g.table.status[1] == OPEN  # events never change the version they came from
    assert slow.edge_minutes()[1] == 4.0


def test_open_minutes_total_follows_events():
    g = RoadGraph(table_from(SQUARE), 1)
    assert g.open_minutes_total == pytest.approx(2 * (1 + 1 + 3.5 + 1 + 5))
    g2 = g.with_events([("E4", "closed", None), ("E0", "degraded", 0.5)])
    assert g2.open_minutes_total == pytest.approx(2 * (2 + 1 + 3.5 + 1))
    assert RoadGraph(g2.table, 9).open_minutes_total == pytest.approx(g2.open_minutes_total)


def test_closure_cuts_off_and_reopening_restores():
    g = RoadGraph(table_from([(0, 1, 1.0), (1, 2, 1.0)]), 1)
    cut = g.with_events([("E1", "closed", None)])
    with pytest.raises(NoRoute):
        cut.route("N0", "N2")
    assert math.isinf(cut.from_site(2).minutes[0])
    back = cut.with_events([("E1", "open", None)])
    assert back.version == 3
    assert back.route("N0", "N2").minutes == 2.0


@pytest.mark.parametrize(
    "event",
    [("E9", "closed", None), ("E0", "flooded", None), ("E0", "degraded", 0.0), ("E0", "open", 2)],
)
def test_bad_events_are_refused(event):
    g = RoadGraph(table_from(SQUARE), 1)
    with pytest.raises((KeyError, ValueError)):
        g.with_events([event])


def test_searches_agree_with_networkx_on_random_graphs():
    for seed in range(5):
        table = random_table(seed, 120)
        g = RoadGraph(table, 1)
        for site in (0, 37, 99):
            tree = g.from_site(site)
            want = reference_minutes(table, site)
            got = {i: m for i, m in enumerate(tree.minutes) if np.isfinite(m)}
            assert got.keys() == want.keys()
            for i, m in want.items():
                assert got[i] == pytest.approx(m, rel=1e-12)
            km = g.distances_km(tree)
            for node in list(want)[:20]:
                r = g.route_in(tree, node)
                assert r.minutes == pytest.approx(want[node], rel=1e-12)
                assert km[node] == pytest.approx(r.distance_km, rel=1e-12)
                assert sum(g.edge_minutes()[table.edge_ids.index(e)] for e in r.edges) == (
                    pytest.approx(r.minutes, rel=1e-12)
                )
            assert np.all(np.isinf(km[~np.isfinite(tree.minutes)]))


def test_to_networkx_holds_the_open_fastest_arcs():
    table = table_from([(0, 1, 10.0), (0, 1, 4.0), (1, 2, 1.0), (2, 0, 1.0)], oneway=[3],
                       closed=[2])
    nxg = RoadGraph(table, 1).to_networkx()
    assert sorted(nxg.edges(data="weight")) == [(0, 1, 4.0), (1, 0, 4.0), (2, 0, 1.0)]
    assert nxg[0][1]["edge"] == "E1"


def test_an_unchanged_graph_is_never_searched_twice():
    g = RoadGraph(table_from(SQUARE), 1)
    first = g.from_site(2)
    assert g.from_site(2) is first
    g.route("N0", "N2")
    g.route("N3", "N2")
    assert g.searches == 1
    g2 = g.with_events([("E4", "closed", None)])
    assert g2.cache is g.cache
    assert g2.from_site(2) is not first  # a new version is searched afresh
    assert g2.searches == 1
    assert g.from_site(2) is first  # and the old version's tree is still served


def test_a_bounded_search_is_reused_only_when_it_reaches_far_enough():
    g = RoadGraph(table_from([(i, i + 1, 1.0) for i in range(9)]), 1)
    near = g.from_site(0, limit=3.0)
    assert not near.complete
    assert np.isfinite(near.minutes).sum() == 4
    assert g.from_site(0, limit=2.0) is near
    full = g.from_site(0)
    assert full.complete and g.searches == 2
    assert g.from_site(0, limit=3.0) is full


def test_lru_cache_evicts_the_least_recent():
    cache = LRUTreeCache(maxsize=2)
    g = RoadGraph(table_from(SQUARE), 1, cache)
    g.from_site(0)
    g.from_site(1)
    g.from_site(0)
    g.from_site(2)  # evicts site 1
    assert cache.get((1, 1)) is None and cache.get((1, 0)) is not None
    g.from_site(1)
    assert g.searches == 4


def test_a_pluggable_cache_gets_plain_array_trees():
    class DictCache:
        def __init__(self):
            self.store = {}

        def get(self, key):
            return self.store.get(key)

        def put(self, key, tree):
            self.store[key] = tree

    cache = DictCache()
    g = RoadGraph(table_from(SQUARE), 5, cache)
    g.route("N0", "N2")
    (key, tree), = cache.store.items()
    assert key == (5, 2) and isinstance(tree, SiteTree)
    assert tree.minutes.tolist() == [2.0, 1.0, 0.0, 1.0]
    assert tree.path_from(0) == [0, 1, 2]


def test_node_lookups():
    g = RoadGraph(table_from(SQUARE), 1)
    assert g.node_index("N3") == 3
    with pytest.raises(KeyError):
        g.node_index("N9")
    assert g.node_indexes(["N2", "nope", None, "N0"]).tolist() == [2, -1, -1, 0]
    with pytest.raises(ValueError):
        g.route_in(g.with_events([]).from_site(0), 1)  # a tree of another version


def test_a_million_node_graph_is_columns_not_objects():
    n = 1_000_000
    table = RoadTable(
        node_ids=[f"n{i}" for i in range(n)],
        node_lon=np.zeros(n),
        node_lat=np.zeros(n),
        edge_ids=[f"e{i}" for i in range(n - 1)],
        edge_from=np.arange(n - 1, dtype=np.int32),
        edge_to=np.arange(1, n, dtype=np.int32),
        length_km=np.ones(n - 1),
        road_class=np.full(n - 1, "county", dtype=object),
        speed_kmh=np.full(n - 1, 60.0),
        oneway=np.zeros(n - 1, dtype=bool),
        status=np.zeros(n - 1, dtype=np.int8),
        speed_factor=np.ones(n - 1),
    )
    g = RoadGraph(table, 1)
    assert g.from_site(0, limit=10.0).minutes[10] == 10.0
    g2 = g.with_events([("e5", "closed", None)])
    assert math.isinf(g2.from_site(0, limit=10.0).minutes[10])
    assert g2.node_index("n999999") == n - 1
