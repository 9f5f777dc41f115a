"""The generated data set: the counts of the contract, a road graph shaped like a road network
whose fastest roads run about as long as real ones, stock that keeps the ledger's rules and
carries the seed's storm, and road GeoJSON that survives a round trip."""

import copy
import dataclasses
import json
import math
import re
from collections import Counter, defaultdict
from datetime import date

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, dijkstra

from allocation_svc.geojson import roads_from_geojson, roads_geojson
from allocation_svc.roadtable import CLASS_SPEED_KMH, CLOSED, DEGRADED, OPEN, RoadTable
from emsupply import dataset

CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")  # the API's code rule
LEVEL_INDEX = {level: k for k, level in enumerate(dataset.LEVELS)}
COUNTY_NAMES = ("Kaili", "Huangping", "Shibing", "Sansui", "Zhenyuan", "Cengong", "Tianzhu",
                "Jinping", "Jianhe", "Taijiang", "Liping", "Rongjiang", "Congjiang", "Leishan",
                "Majiang", "Danzhai")


@pytest.fixture(scope="module")
def qdn() -> dataset.DataSet:
    return dataset.qiandongnan()


def great_circle_km(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Haversine distance, computed independently of the generator."""
    lon1, lat1, lon2, lat2 = (np.radians(v) for v in (lon1, lat1, lon2, lat2))
    h = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0088 * np.arcsin(np.sqrt(h))


def straight_km(roads: RoadTable) -> np.ndarray:
    """Great-circle distance between the ends of every edge."""
    a, b = roads.edge_from, roads.edge_to
    return great_circle_km(roads.node_lon[a], roads.node_lat[a], roads.node_lon[b],
                           roads.node_lat[b])


def fastest_roads(roads: RoadTable, sources: list[int],
                  towards: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Minutes and km of the fastest road from each source to every node (to each source from
    every node when `towards`), one-way roads driven one way: the km are summed along the
    shortest-path tree of the minutes."""
    two_way = ~roads.oneway
    rows = np.concatenate([roads.edge_from, roads.edge_to[two_way]])
    cols = np.concatenate([roads.edge_to, roads.edge_from[two_way]])
    if towards:
        rows, cols = cols, rows
    n = roads.node_count
    minutes = coo_matrix((np.concatenate([roads.minutes(), roads.minutes()[two_way]]),
                          (rows, cols)), shape=(n, n)).tocsr()
    km = coo_matrix((np.concatenate([roads.length_km, roads.length_km[two_way]]),
                     (rows, cols)), shape=(n, n)).tocsr()
    time, before = dijkstra(minutes, indices=sources, return_predecessors=True)
    length = np.empty_like(time)
    for k, (source, pred) in enumerate(zip(sources, before, strict=True)):
        reached = np.flatnonzero(pred >= 0)
        step = np.asarray(km[pred[reached], reached]).ravel()
        tree = coo_matrix((step, (pred[reached], reached)), shape=(n, n)).tocsr()
        length[k] = dijkstra(tree, indices=source)
    return time, length


def strong_components(roads: RoadTable) -> int:
    """Strongly connected components when one-way roads are driven one way only."""
    two_way = ~roads.oneway
    rows = np.concatenate([roads.edge_from, roads.edge_to[two_way]])
    cols = np.concatenate([roads.edge_to, roads.edge_from[two_way]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(roads.node_count,) * 2)
    return connected_components(graph, directed=True, connection="strong")[0]


def assert_same_roads(left: RoadTable, right: RoadTable) -> None:
    for field in dataclasses.fields(RoadTable):
        a, b = getattr(left, field.name), getattr(right, field.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype, field.name
        np.testing.assert_array_equal(a, b, err_msg=field.name)


def assert_same_data(left: dataset.DataSet, right: dataset.DataSet) -> None:
    for name in ("warehouses", "items", "stock", "levels"):
        assert getattr(left, name) == getattr(right, name), name
    assert_same_roads(left.roads, right.roads)


# -- the depot network -------------------------------------------------------------------------

def test_counts_and_statuses_of_the_contract(qdn):
    by_level = Counter(w["level"] for w in qdn.warehouses)
    assert by_level == {"prefecture": 1, "county": 16, "township": 217, "village": 2435}
    counties = [w for w in qdn.warehouses if w["level"] == "county"]
    assert Counter(w["status"] for w in counties) == {
        "active": 7, "under_construction": 4, "planned": 5}
    assert [w["code"] for w in qdn.warehouses if w["level"] == "prefecture"] == ["QDN"]
    assert qdn.warehouses[0]["status"] == "active"
    assert {w["status"] for w in qdn.warehouses if w["level"] == "township"} == {"active"}
    villages = Counter(w["status"] for w in qdn.warehouses if w["level"] == "village")
    assert set(villages) <= {"active", "closed"} and villages["closed"] <= 20


def test_the_sixteen_real_counties(qdn):
    names = [w["name"] for w in qdn.warehouses if w["level"] == "county"]
    assert sorted(n.split()[0] for n in names) == sorted(COUNTY_NAMES)


def test_every_depot_has_a_chinese_name_distinct_among_its_siblings(qdn):
    by_code = {w["code"]: w for w in qdn.warehouses}
    assert by_code["QDN"]["name_zh"] == "黔东南州应急物资储备库"
    assert by_code["RJ"]["name_zh"] == "榕江县应急物资储备库"
    han = re.compile(r"^[\u4e00-\u9fff]+$")
    assert all(han.match(w["name_zh"]) for w in qdn.warehouses)
    assert all(w["name_zh"].endswith(("镇应急物资储备中心", "乡应急物资储备中心"))
               for w in qdn.warehouses if w["level"] == "township")
    assert all(w["name_zh"].endswith("村应急物资储备点")
               for w in qdn.warehouses if w["level"] == "village")
    siblings = defaultdict(list)
    for w in qdn.warehouses:
        siblings[w["parent"]].append(w["name_zh"])
    assert all(len(set(names)) == len(names) for names in siblings.values())


def test_national_depots_have_chinese_names_too():
    data = dataset.national(5_000)
    assert all(w["name_zh"] for w in data.warehouses)


def test_parents_are_exactly_one_level_up(qdn):
    by_code = {w["code"]: w for w in qdn.warehouses}
    for w in qdn.warehouses:
        if w["level"] == "prefecture":
            assert w["parent"] is None
        else:
            assert LEVEL_INDEX[by_code[w["parent"]]["level"]] == LEVEL_INDEX[w["level"]] - 1


def test_every_county_has_townships_and_every_township_villages(qdn):
    children = Counter(w["parent"] for w in qdn.warehouses)
    assert all(children[w["code"]] >= 1 for w in qdn.warehouses if w["level"] in
               ("county", "township"))


def test_codes_are_unique_readable_and_nested(qdn):
    codes = [w["code"] for w in qdn.warehouses]
    assert len(set(codes)) == len(codes)
    assert all(CODE.match(c) for c in codes)
    assert all(w["code"].startswith(w["parent"] + "-") for w in qdn.warehouses
               if w["level"] in ("township", "village"))
    assert "KL" in codes and "KL-T01" in codes and "KL-T01-V001" in codes


def test_placed_inside_the_prefecture(qdn):
    west, south, east, north = dataset.QDN_BOX
    assert all(west <= w["lon"] <= east and south <= w["lat"] <= north for w in qdn.warehouses)
    roads = qdn.roads
    assert west <= roads.node_lon.min() and roads.node_lon.max() <= east
    assert south <= roads.node_lat.min() and roads.node_lat.max() <= north


# -- the road graph ----------------------------------------------------------------------------

def test_every_warehouse_has_its_own_road_node_at_its_place(qdn):
    index = {node: k for k, node in enumerate(qdn.roads.node_ids)}
    nodes = [w["road_node"] for w in qdn.warehouses]
    assert len(set(nodes)) == len(nodes)
    for w in qdn.warehouses:
        k = index[w["road_node"]]
        assert (qdn.roads.node_lon[k], qdn.roads.node_lat[k]) == (w["lon"], w["lat"])


def test_road_graph_is_connected_both_ways(qdn):
    assert qdn.roads.oneway.any()
    assert strong_components(qdn.roads) == 1


def test_road_graph_looks_like_roads(qdn):
    roads = qdn.roads
    assert roads.node_count > len(qdn.warehouses)  # junctions on long roads
    assert 2.5 <= 2 * roads.edge_count / roads.node_count <= 3.0
    assert set(roads.road_class) == set(CLASS_SPEED_KMH)
    assert roads.oneway.mean() < 0.05
    assert len(set(roads.node_ids)) == roads.node_count
    assert len(set(roads.edge_ids)) == roads.edge_count
    pairs = set(zip(np.minimum(roads.edge_from, roads.edge_to).tolist(),
                    np.maximum(roads.edge_from, roads.edge_to).tolist(), strict=True))
    assert len(pairs) == roads.edge_count  # no parallel roads, no loops on one node
    assert (roads.edge_from != roads.edge_to).all()


def test_all_roads_open_at_generation(qdn):
    assert (qdn.roads.status == OPEN).all()
    assert (qdn.roads.speed_factor == 1.0).all()
    assert np.isfinite(qdn.roads.minutes()).all()


def test_trunk_roads_join_the_county_seats(qdn):
    county_nodes = {int(w["road_node"][1:]) for w in qdn.warehouses
                    if w["level"] in ("prefecture", "county")}
    trunk = np.isin(qdn.roads.road_class, ["expressway", "national"])
    ends = set(qdn.roads.edge_from[trunk].tolist()) | set(qdn.roads.edge_to[trunk].tolist())
    assert county_nodes <= ends


def test_county_seats_are_near_the_prefecture_depot_by_road(qdn):
    """As on Guizhou's expressways: every county seat within 1.6x the straight line and 3.5 h."""
    top = [w for w in qdn.warehouses if w["level"] in ("prefecture", "county")]
    node = [int(w["road_node"][1:]) for w in top]
    assert top[0]["code"] == "QDN"
    minutes, km = fastest_roads(qdn.roads, [node[0]])
    straight = great_circle_km(top[0]["lon"], top[0]["lat"], np.array([w["lon"] for w in top]),
                               np.array([w["lat"] for w in top]))
    assert (km[0, node[1:]] <= 1.6 * straight[1:]).all()
    assert (minutes[0, node[1:]] <= 210).all()


def test_townships_are_near_their_county_seat_by_road(qdn):
    """Every township within 1.8x the straight line and 2 h of its own county seat."""
    by_code = {w["code"]: w for w in qdn.warehouses}
    seats = [w["code"] for w in qdn.warehouses if w["level"] == "county"]
    towns = [w for w in qdn.warehouses if w["level"] == "township"]
    minutes, km = fastest_roads(qdn.roads, [int(by_code[c]["road_node"][1:]) for c in seats],
                                towards=True)
    seat = np.array([seats.index(w["parent"]) for w in towns])
    node = np.array([int(w["road_node"][1:]) for w in towns])
    straight = great_circle_km(
        np.array([w["lon"] for w in towns]), np.array([w["lat"] for w in towns]),
        np.array([by_code[w["parent"]]["lon"] for w in towns]),
        np.array([by_code[w["parent"]]["lat"] for w in towns]))
    assert (km[seat, node] <= 1.8 * straight).all()
    assert (minutes[seat, node] < 120).all()


def test_roads_are_longer_than_straight_lines(qdn):
    straight = straight_km(qdn.roads)
    assert (qdn.roads.length_km >= straight).all()
    assert (qdn.roads.length_km <= 1.8 * straight + 0.011).all()  # winding, metres rounded up
    assert (qdn.roads.length_km > 0).all()


# -- items and stock ---------------------------------------------------------------------------

def test_relief_items(qdn):
    items = {i["sku"]: i for i in qdn.items}
    assert len(items) == len(qdn.items) == 22
    assert {i["sku"] for i in qdn.items if i["perishable"]} == {
        "WATER-550", "RICE", "INSTANT-FOOD", "FIRST-AID-KIT"}
    assert all(CODE.match(sku) and i["name"] and i["name_zh"] and i["unit"] and i["category"]
               and i["unit_weight_kg"] > 0 for sku, i in items.items())
    assert items["TENT"]["per_person"] == 0.25 and items["QUILT"]["per_person"] == 1.0
    assert items["WATER-550"]["per_person_day"] == 3.0 and items["RICE"]["unit"] == "kg"
    assert items["GENERATOR"]["per_person"] == items["GENERATOR"]["per_person_day"] == 0.0


def test_each_kind_of_incident_has_its_own_items(qdn):
    """A snow-and-ice response needs heaters, de-icing salt and chains (and a second quilt); a
    flood needs life jackets, sandbags and pumps; neither burdens the other's demands."""
    from allocation_svc.plans import derived_demands

    site = [{"id": "V", "population": 400}]
    wanted = {kind: {d["item"]: d["quantity"] for d in derived_demands(site, qdn.items, 3, kind)}
              for kind in ("snow_ice", "flood", "rainstorm")}
    assert {"HEATER", "DEICING-SALT", "SNOW-CHAINS"} <= set(wanted["snow_ice"])
    assert wanted["snow_ice"]["HEATER"] == 100 and wanted["snow_ice"]["QUILT"] == 800
    assert {"LIFE-JACKET", "SANDBAG", "WATER-PUMP"} <= set(wanted["flood"])
    assert not {"HEATER", "DEICING-SALT", "SNOW-CHAINS"} & set(wanted["flood"])
    assert not {"LIFE-JACKET", "SANDBAG", "HEATER"} & set(wanted["rainstorm"])
    assert wanted["flood"]["QUILT"] == wanted["rainstorm"]["QUILT"] == 400
    assert wanted["rainstorm"] == {d["item"]: d["quantity"]
                                   for d in derived_demands(site, qdn.items, 3)}


def test_only_active_warehouses_hold_stock(qdn):
    status = {w["code"]: w["status"] for w in qdn.warehouses}
    assert {status[s["warehouse"]] for s in qdn.stock} == {"active"}
    assert {status[row["warehouse"]] for row in qdn.levels} == {"active"}
    active = {c for c, s in status.items() if s == "active"}
    assert len({s["warehouse"] for s in qdn.stock}) > 0.9 * len(active)


def test_stock_rows_keep_the_ledger_rules(qdn):
    perishable = {i["sku"] for i in qdn.items if i["perishable"]}
    lots = defaultdict(list)
    for row in qdn.stock:
        assert isinstance(row["quantity"], int) and row["quantity"] > 0
        if row["item"] in perishable:
            assert row["expires_on"] > dataset.reference_date() > date.today().isoformat()
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["expires_on"]) and row["lot"]
        else:
            assert row["lot"] == "" and row["expires_on"] is None
        lots[row["warehouse"], row["item"]].append(row["lot"])
    assert all(len(set(names)) == len(names) for names in lots.values())
    counts = Counter(len(names) for (_, sku), names in lots.items() if sku in perishable)
    assert set(counts) == {1, 2, 3}


def test_min_and_target_norms(qdn):
    levels = {(row["warehouse"], row["item"]): row for row in qdn.levels}
    assert len(levels) == len(qdn.levels)
    assert all(1 <= row["min"] <= row["target"] for row in qdn.levels)
    on_hand = Counter()
    for row in qdn.stock:
        on_hand[row["warehouse"], row["item"]] += row["quantity"]
    assert set(on_hand) <= set(levels)
    below = [key for key, row in levels.items() if on_hand[key] < row["min"]]
    assert 0.05 * len(levels) < len(below) < 0.4 * len(levels)  # replenishment has work
    assert not [key for key in below if key[0] == "QDN"]


def backbone_shortfalls(data: dataset.DataSet, people: int = 9_690, days: int = 3) -> list:
    """(prefecture, item) pairs where a prefecture depot and its active county depots together
    hold less than `people` resettled for `days` need by the items' norms, above their minimums
    (which a plan keeps outside the incident)."""
    by_code = {w["code"]: w for w in data.warehouses}
    on_hand = Counter()
    for row in data.stock:
        on_hand[row["warehouse"], row["item"]] += row["quantity"]
    held = Counter()
    for row in data.levels:
        w = by_code[row["warehouse"]]
        if w["level"] == "prefecture" or (w["level"] == "county" and w["status"] == "active"):
            held[w["code"] if w["level"] == "prefecture" else w["parent"], row["item"]] += \
                max(on_hand[row["warehouse"], row["item"]] - row["min"], 0)
    need = {i["sku"]: math.ceil(people * i["per_person"] + people * i["per_person_day"] * days)
            for i in data.items}
    return [(w["code"], sku) for w in data.warehouses if w["level"] == "prefecture"
            for sku, n in need.items() if n and held[w["code"], sku] < n]


def test_the_backbone_carries_the_storm_of_the_seed(qdn):
    """QDN and the 7 active county depots hold what 9,690 people resettled for 3 days need,
    above their minimums."""
    backbone = [w for w in qdn.warehouses if w["level"] == "prefecture"
                or (w["level"] == "county" and w["status"] == "active")]
    assert len(backbone) == 8
    assert sum(i["per_person"] + i["per_person_day"] > 0 for i in qdn.items) == 12
    assert backbone_shortfalls(qdn) == []
    held = Counter()
    for row in qdn.stock:
        held[row["warehouse"], row["item"]] += row["quantity"]
    assert held["QDN", "QUILT"] <= 20_000 and held["QDN", "WATER-550"] <= 200_000  # plausible


def test_every_prefecture_backbone_carries_the_storm_at_national_scale():
    assert backbone_shortfalls(dataset.national(20_000, with_stock=True)) == []


def test_stock_by_level(qdn):
    level = {w["code"]: w["level"] for w in qdn.warehouses}
    total = Counter()
    for row in qdn.stock:
        total[row["warehouse"], row["item"]] += row["quantity"]
    for item in qdn.items:
        held = {code: q for (code, sku), q in total.items() if sku == item["sku"]}
        assert max(held, key=held.get) == "QDN"
    items_at = defaultdict(set)
    for code, sku in total:
        items_at[code].add(sku)
    assert len(items_at["QDN"]) == 22
    assert max(len(s) for c, s in items_at.items() if level[c] == "village") <= 6
    assert min(len(s) for c, s in items_at.items() if level[c] == "county") >= 12


# -- determinism and sizes ---------------------------------------------------------------------

def test_same_seed_same_bytes(qdn):
    again = dataset.qiandongnan()
    assert_same_data(qdn, again)
    assert json.dumps(roads_geojson(qdn.roads)) == \
        json.dumps(roads_geojson(again.roads))


def test_another_seed_another_data_set(qdn):
    other = dataset.qiandongnan(seed=7)
    assert [w["lon"] for w in other.warehouses] != [w["lon"] for w in qdn.warehouses]
    upper = [w["code"] for w in qdn.warehouses if w["level"] != "village"]
    assert [w["code"] for w in other.warehouses if w["level"] != "village"] == upper


def test_without_stock_the_network_is_the_same(qdn):
    bare = dataset.generate(with_stock=False)
    assert bare.stock == [] and bare.levels == []
    assert bare.warehouses == qdn.warehouses
    assert_same_roads(bare.roads, qdn.roads)


def test_villages_need_a_township():
    with pytest.raises(ValueError, match="township"):
        dataset.generate(townships=0, villages=3)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), townships=st.integers(0, 40), per=st.integers(0, 6))
def test_any_size_is_a_connected_tree_of_depots(seed, townships, per):
    data = dataset.generate(seed, townships=townships, villages=townships * per)
    assert Counter(w["level"] for w in data.warehouses)["village"] == townships * per
    assert strong_components(data.roads) == 1
    assert (data.roads.length_km >= straight_km(data.roads)).all()
    codes = {w["code"] for w in data.warehouses}
    assert len(codes) == len(data.warehouses)
    assert all(w["parent"] is None or w["parent"] in codes for w in data.warehouses)


def test_national_scale_smoke():
    data = dataset.national(20_000)
    levels = Counter(w["level"] for w in data.warehouses)
    assert sum(levels.values()) == 20_000
    assert levels["prefecture"] > 1 and levels["village"] > 0.8 * 20_000
    assert data.stock == [] and data.levels == []
    assert strong_components(data.roads) == 1
    assert len({w["code"] for w in data.warehouses}) == 20_000
    assert all(CODE.match(w["code"]) for w in data.warehouses)
    assert 2.5 <= 2 * data.roads.edge_count / data.roads.node_count <= 3.0


def test_national_needs_every_level():
    with pytest.raises(ValueError):
        dataset.national(3)


# -- GeoJSON -----------------------------------------------------------------------------------

def test_geojson_round_trip(qdn):
    doc = json.loads(json.dumps(roads_geojson(qdn.roads)))
    assert_same_roads(roads_from_geojson(doc), qdn.roads)


def test_geojson_round_trip_keeps_closures_and_slowdowns(qdn):
    roads = copy.deepcopy(qdn.roads)
    roads.status[:3] = [CLOSED, DEGRADED, DEGRADED]
    roads.speed_factor[1:3] = [0.5, 0.25]
    doc = json.loads(json.dumps(roads_geojson(roads)))
    assert_same_roads(roads_from_geojson(doc), roads)


def test_geojson_features_follow_the_contract(qdn):
    features = roads_geojson(qdn.roads)["features"]
    points = [f for f in features if f["geometry"]["type"] == "Point"]
    lines = [f for f in features if f["geometry"]["type"] == "LineString"]
    assert len(points) == qdn.roads.node_count and len(lines) == qdn.roads.edge_count
    assert points[0]["properties"] == {"id": "n0"}
    required = {"id", "from", "to", "length_km", "road_class", "oneway", "status"}
    assert all(required <= set(f["properties"]) for f in lines)
    with_speed = sum("speed_kmh" in f["properties"] for f in lines)
    assert with_speed == np.count_nonzero(~np.isnan(qdn.roads.speed_kmh)) > 0


def small_doc() -> dict:
    def point(node, lon, lat):
        return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
                "properties": {"id": node}}

    def line(edge, a, b):
        return {"type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [[108, 26], [108.1, 26]]},
                "properties": {"id": edge, "from": a, "to": b, "length_km": 12.5,
                               "road_class": "county", "oneway": False, "status": "open"}}

    return {"type": "FeatureCollection",
            "features": [point("a", 108.0, 26.0), point("b", 108.1, 26.0),
                         point("c", 108.1, 26.1), line("e1", "a", "b"), line("e2", "b", "c")]}


def test_small_document_imports():
    roads = roads_from_geojson(small_doc())
    assert roads.node_ids == ["a", "b", "c"] and roads.edge_ids == ["e1", "e2"]
    assert roads.edge_from.tolist() == [0, 1] and roads.edge_to.tolist() == [1, 2]
    assert np.isnan(roads.speed_kmh).all() and roads.minutes().tolist() == [18.75, 18.75]


def test_feature_level_ids_and_defaults_are_accepted():
    doc = small_doc()
    doc["features"][0]["id"] = doc["features"][0]["properties"].pop("id")
    del doc["features"][3]["properties"]["oneway"], doc["features"][3]["properties"]["status"]
    roads = roads_from_geojson(doc)
    assert roads.node_ids[0] == "a" and not roads.oneway[0] and roads.status[0] == OPEN


def _set(index, field, value):
    def change(doc):
        doc["features"][index]["properties"][field] = value
    return change


def _drop(index, field):
    def change(doc):
        del doc["features"][index]["properties"][field]
    return change


def _geometry(index, key, value):
    def change(doc):
        doc["features"][index]["geometry"][key] = value
    return change


@pytest.mark.parametrize(("change", "where"), [
    (_drop(0, "id"), "feature 0: properties.id"),
    (_set(1, "id", "a"), "feature 1: properties.id: duplicate"),
    (_set(1, "id", 7), "feature 1: properties.id"),
    (_drop(3, "id"), "feature 3: properties.id"),
    (_set(4, "id", "e1"), "feature 4: properties.id: duplicate"),
    (_set(3, "from", "nowhere"), "feature 3: properties.from: unknown node 'nowhere'"),
    (_drop(4, "to"), "feature 4: properties.to"),
    (_set(3, "length_km", -1.0), "feature 3: properties.length_km"),
    (_set(3, "length_km", "12"), "feature 3: properties.length_km"),
    (_set(3, "length_km", float("nan")), "feature 3: properties.length_km"),
    (_drop(3, "length_km"), "feature 3: properties.length_km"),
    (_set(3, "road_class", "footpath"), "feature 3: properties.road_class"),
    (_set(4, "status", "flooded"), "feature 4: properties.status"),
    (_set(3, "speed_kmh", 0), "feature 3: properties.speed_kmh"),
    (_set(3, "oneway", "yes"), "feature 3: properties.oneway"),
    (_set(3, "speed_factor", 1.5), "feature 3: properties.speed_factor"),
    (_geometry(2, "type", "Polygon"), "feature 2: geometry.type"),
    (_geometry(2, "coordinates", [200.0, 26.0]), "feature 2: geometry.coordinates"),
    (_geometry(2, "coordinates", [True, 26.0]), "feature 2: geometry.coordinates"),
    (lambda doc: doc["features"][1].pop("properties"), "feature 1: properties"),
    (lambda doc: doc["features"].append("road"), "feature 5: geometry.type"),
    (lambda doc: doc.update(type="Feature"), "document: type"),
    (lambda doc: doc.update(features={}), "document: features"),
])
def test_bad_features_are_named(change, where):
    doc = small_doc()
    change(doc)
    with pytest.raises(ValueError, match=re.escape(where)):
        roads_from_geojson(doc)
