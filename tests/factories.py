"""Test data: a small four-level tree and a few items, made through the API."""

from __future__ import annotations

TREE = [
    {"code": "QDN", "name": "Qiandongnan prefecture depot", "level": "prefecture"},
    {"code": "KL", "name": "Kaili depot", "level": "county", "parent": "QDN"},
    {"code": "KL-T01", "name": "Dafeng township", "level": "township", "parent": "KL"},
    {"code": "KL-T01-V01", "name": "Village 1", "level": "village", "parent": "KL-T01"},
    {"code": "KL-T01-V02", "name": "Village 2", "level": "village", "parent": "KL-T01"},
    {"code": "KL-T02", "name": "Sankeshu township", "level": "township", "parent": "KL"},
    {"code": "KL-T02-V01", "name": "Village 3", "level": "village", "parent": "KL-T02"},
    {"code": "LP", "name": "Liping depot", "level": "county", "parent": "QDN"},
]
ITEMS = [
    {"sku": "TENT", "name": "Tent", "name_zh": "帐篷", "unit": "piece", "category": "shelter",
     "unit_weight_kg": 12.5, "per_person": 0.25},
    {"sku": "QUILT", "name": "Quilt", "name_zh": "棉被", "unit": "piece", "category": "shelter",
     "unit_weight_kg": 2.0, "per_person": 1},
    {"sku": "WATER", "name": "Bottled water", "name_zh": "瓶装水", "unit": "bottle",
     "category": "food", "unit_weight_kg": 0.55, "perishable": True, "per_person_day": 3},
]


def build_tree(caller, with_roads: bool = False) -> None:
    for warehouse in TREE:
        if with_roads:
            warehouse = {**warehouse, "road_node": road_node(warehouse["code"])}
        response = caller.post("/api/v1/warehouses", warehouse)
        assert response.status_code == 201, response.get_json()
    for item in ITEMS:
        response = caller.post("/api/v1/items", item)
        assert response.status_code == 201, response.get_json()


def build_network(inv, alloc) -> None:
    """The tree with road nodes in the inventory, and its roads in the allocation service."""
    build_tree(inv, with_roads=True)
    response = alloc.put("/api/v1/roads", roads_geojson())
    assert response.status_code == 200, response.get_json()


def receive(caller, warehouse: str, item: str, quantity: int, **extra):
    body = {"warehouse": warehouse, "item": item, "kind": "receipt", "quantity": quantity, **extra}
    if item == "WATER":
        body.setdefault("expires_on", "2027-06-01")
    response = caller.post("/api/v1/movements", body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def road_node(code: str) -> str:
    return "n-" + code


# A small road network over TREE: (edge id, from, to, km, class). KL-T01 and KL-T02 are also
# joined through junction J1, so closing the county road to KL-T02 leaves a detour.
EDGES = [
    ("e1", "QDN", "KL", 10, "national"),
    ("e2", "KL", "KL-T01", 8, "county"),
    ("e3", "KL-T01", "KL-T01-V01", 3, "village"),
    ("e4", "KL-T01", "KL-T01-V02", 4, "village"),
    ("e5", "KL", "KL-T02", 9, "county"),
    ("e6", "KL-T02", "KL-T02-V01", 3, "village"),
    ("e7", "QDN", "LP", 60, "expressway"),
    ("e8", "KL-T01", "J1", 5, "township"),
    ("e9", "J1", "KL-T02", 5, "township"),
]


def roads_geojson() -> dict:
    places = [w["code"] for w in TREE] + ["J1"]
    features = [{"type": "Feature",
                 "geometry": {"type": "Point", "coordinates": [108.0 + i * 0.01, 26.5 + i * 0.01]},
                 "properties": {"id": road_node(code)}} for i, code in enumerate(places)]
    for eid, a, b, km, cls in EDGES:
        features.append({"type": "Feature",
                         "geometry": {"type": "LineString", "coordinates": []},
                         "properties": {"id": eid, "from": road_node(a), "to": road_node(b),
                                        "length_km": km, "road_class": cls}})
    return {"type": "FeatureCollection", "features": features}
