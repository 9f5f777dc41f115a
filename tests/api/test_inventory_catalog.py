"""Warehouses (the four-level tree) and items: create, read, filter, page, change."""

from __future__ import annotations

import pytest
from factories import ITEMS, TREE, build_tree, receive


def codes(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [row["code"] for row in response.get_json()["items"]]


def test_warehouse_crud(inv):
    build_tree(inv)
    created = inv.post("/api/v1/warehouses", {
        "code": "KL-T01-V03", "name": "Village 9", "level": "village", "parent": "KL-T01",
        "status": "under_construction", "lon": 107.98, "lat": 26.58, "road_node": "n-77"})
    assert created.status_code == 201
    body = created.get_json()
    assert body["parent"] == "KL-T01" and body["path"] == ["QDN", "KL", "KL-T01", "KL-T01-V03"]
    assert body["updated_at"].endswith("Z")
    got = inv.get("/api/v1/warehouses/KL-T01-V03").get_json()
    assert got == body
    assert (got["lon"], got["lat"], got["road_node"], got["status"]) == (
        107.98, 26.58, "n-77", "under_construction")
    assert inv.get("/api/v1/warehouses/QDN").get_json()["parent"] is None
    patched = inv.patch("/api/v1/warehouses/KL-T01-V03", {"name": "Village 3b",
                                                           "status": "active",
                                                           "road_node": None})
    assert patched.status_code == 200
    assert patched.get_json()["name"] == "Village 3b" and patched.get_json()["road_node"] is None
    assert patched.get_json()["updated_at"] >= body["updated_at"]
    assert inv.get("/api/v1/warehouses/KL-T01-V03").get_json()["status"] == "active"


def test_warehouse_chinese_name(inv):
    """`name_zh` is optional: given at creation or later, changed, cleared, read back."""
    build_tree(inv)
    assert inv.get("/api/v1/warehouses/KL").get_json()["name_zh"] is None
    created = inv.post("/api/v1/warehouses", {
        "code": "KL-T03", "name": "Guzhou township", "name_zh": "古州镇应急物资储备中心",
        "level": "township", "parent": "KL"})
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["name_zh"] == "古州镇应急物资储备中心"
    assert inv.get("/api/v1/warehouses/KL-T03").get_json() == created.get_json()
    listed = inv.get("/api/v1/warehouses?parent=KL").get_json()["items"]
    assert [(w["code"], w["name_zh"]) for w in listed] == [
        ("KL-T01", None), ("KL-T02", None), ("KL-T03", "古州镇应急物资储备中心")]

    patched = inv.patch("/api/v1/warehouses/KL", {"name_zh": "凯里市应急物资储备库"})
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()["name_zh"] == "凯里市应急物资储备库"
    assert patched.get_json()["name"] == "Kaili depot"  # the other fields are left as they were
    got = inv.get("/api/v1/warehouses/KL").get_json()
    assert (got["name"], got["name_zh"]) == ("Kaili depot", "凯里市应急物资储备库")
    cleared = inv.patch("/api/v1/warehouses/KL-T03", {"name_zh": None})
    assert cleared.status_code == 200 and cleared.get_json()["name_zh"] is None


@pytest.mark.parametrize("name_zh", ["凯" * 201, "", "凯里\x00市", "凯里\ud800市", 7],
                         ids=["too-long", "empty", "nul", "lone-surrogate", "not-text"])
def test_a_bad_chinese_name_is_422_naming_it(inv, name_zh):
    build_tree(inv)
    for response in (
            inv.post("/api/v1/warehouses", {"code": "KL-T03", "name": "Guzhou township",
                                            "name_zh": name_zh, "level": "township",
                                            "parent": "KL"}),
            inv.patch("/api/v1/warehouses/KL", {"name_zh": name_zh})):
        assert response.status_code == 422, response.get_json()
        assert list(response.get_json()["errors"]) == ["name_zh"]
    assert inv.get("/api/v1/warehouses/KL-T03").status_code == 404
    assert inv.get("/api/v1/warehouses/KL").get_json()["name_zh"] is None
    longest = inv.patch("/api/v1/warehouses/KL", {"name_zh": "凯" * 200})
    assert longest.status_code == 200 and longest.get_json()["name_zh"] == "凯" * 200


def test_moving_a_township_moves_its_subtree_and_keepers_scope(inv):
    build_tree(inv)
    receive(inv, "KL-T01-V01", "TENT", 4)
    moved = inv.patch("/api/v1/warehouses/KL-T01", {"parent": "LP"})
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json()["parent"] == "LP"
    assert moved.get_json()["path"] == ["QDN", "LP", "KL-T01"]
    village = inv.get("/api/v1/warehouses/KL-T01-V01").get_json()
    assert village["path"] == ["QDN", "LP", "KL-T01", "KL-T01-V01"]
    assert codes(inv.get("/api/v1/warehouses?parent=LP")) == ["KL-T01"]
    lp_stock = inv.get("/api/v1/stock?warehouse=LP&subtree=true").get_json()["items"]
    assert [(r["warehouse"], r["on_hand"]) for r in lp_stock] == [("KL-T01-V01", 4)]
    assert inv.get("/api/v1/stock?warehouse=KL&subtree=true").get_json()["items"] == []
    lp_keeper = inv.as_("keeper", "LP")
    assert lp_keeper.post("/api/v1/movements", {"warehouse": "KL-T01-V01", "item": "TENT",
                                                "kind": "issue", "quantity": 1}
                          ).status_code == 201
    assert inv.as_("keeper", "KL").post("/api/v1/movements", {
        "warehouse": "KL-T01-V01", "item": "TENT", "kind": "issue", "quantity": 1}
    ).status_code == 403


def test_codes_with_like_wildcards_do_not_leak_into_subtrees(inv):
    """'_' and '%' are LIKE wildcards: A_1's subtree must not include AB1's."""
    build_tree(inv)
    for code, parent in (("A_1", "QDN"), ("AB1", "QDN"), ("A_1-T", "A_1"), ("AB1-T", "AB1")):
        level = "county" if parent == "QDN" else "township"
        assert inv.post("/api/v1/warehouses", {"code": code, "name": code, "level": level,
                                               "parent": parent}).status_code == 201
    receive(inv, "A_1-T", "TENT", 1)
    receive(inv, "AB1-T", "TENT", 2)
    rows = inv.get("/api/v1/stock?warehouse=A_1&subtree=true").get_json()["items"]
    assert [(r["warehouse"], r["on_hand"]) for r in rows] == [("A_1-T", 1)]
    assert inv.patch("/api/v1/warehouses/A_1-T", {"parent": "AB1"}).status_code == 200
    assert inv.get("/api/v1/warehouses/AB1-T").get_json()["path"] == ["QDN", "AB1", "AB1-T"]
    assert inv.get("/api/v1/warehouses/A_1-T").get_json()["path"] == ["QDN", "AB1", "A_1-T"]


def test_warehouse_list_filters_and_pages(inv):
    build_tree(inv)
    inv.patch("/api/v1/warehouses/LP", {"status": "planned"})
    everything = codes(inv.get("/api/v1/warehouses"))
    assert everything == [w["code"] for w in TREE]
    assert codes(inv.get("/api/v1/warehouses?level=village")) == [
        "KL-T01-V01", "KL-T01-V02", "KL-T02-V01"]
    assert codes(inv.get("/api/v1/warehouses?parent=KL")) == ["KL-T01", "KL-T02"]
    assert codes(inv.get("/api/v1/warehouses?level=county&status=active")) == ["KL"]
    assert codes(inv.get("/api/v1/warehouses?status=planned")) == ["LP"]
    assert codes(inv.get("/api/v1/warehouses?parent=KL-T02-V01")) == []
    seen, cursor, pages = [], None, 0
    while True:
        path = "/api/v1/warehouses?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = inv.get(path).get_json()
        seen += [row["code"] for row in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        assert (cursor is None) == (len(page["items"]) < 3)
        if cursor is None:
            break
    assert seen == everything and pages == 3
    filtered = inv.get("/api/v1/warehouses?level=village&limit=2").get_json()
    rest = inv.get(f"/api/v1/warehouses?level=village&limit=2&cursor="
                   f"{filtered['next_cursor']}").get_json()
    assert [r["code"] for r in filtered["items"] + rest["items"]] == [
        "KL-T01-V01", "KL-T01-V02", "KL-T02-V01"]
    assert rest["next_cursor"] is None


def test_items(inv):
    build_tree(inv)
    listed = inv.get("/api/v1/items").get_json()
    assert [row["sku"] for row in listed["items"]] == [item["sku"] for item in ITEMS]
    assert listed["next_cursor"] is None
    water = inv.get("/api/v1/items/WATER").get_json()
    assert water == {"sku": "WATER", "name": "Bottled water", "name_zh": "瓶装水",
                     "unit": "bottle", "category": "food", "unit_weight_kg": 0.55,
                     "perishable": True, "per_person": 0.0, "per_person_day": 3.0,
                     "type_norms": {}}
    tent = inv.get("/api/v1/items/TENT").get_json()
    assert tent["perishable"] is False and tent["per_person"] == 0.25
    minimal = inv.post("/api/v1/items", {"sku": "SOAP", "name": "Soap", "unit": "bar"})
    assert minimal.status_code == 201
    assert minimal.get_json()["category"] == "general"
    first = inv.get("/api/v1/items?limit=2").get_json()
    second = inv.get(f"/api/v1/items?limit=2&cursor={first['next_cursor']}").get_json()
    assert [r["sku"] for r in first["items"] + second["items"]] == [
        "TENT", "QUILT", "WATER", "SOAP"]


def test_items_carry_norms_per_incident_type(inv):
    heater = {"sku": "HEATER", "name": "Heater", "name_zh": "取暖器", "unit": "piece",
              "type_norms": {"snow_ice": {"per_person": 0.25}}}
    made = inv.post("/api/v1/items", heater)
    assert made.status_code == 201, made.get_json()
    assert made.get_json()["type_norms"] == {"snow_ice": {"per_person": 0.25,
                                                          "per_person_day": 0.0}}
    assert inv.get("/api/v1/items/HEATER").get_json()["type_norms"] == \
        made.get_json()["type_norms"]
    for norms, field in (({"blizzard": {"per_person": 1}}, "type_norms"),
                         ({"flood": {"per_person": -1}}, "type_norms.flood.value.per_person"),
                         ({"flood": {"per_hour": 1}}, "type_norms.flood.value.per_hour"),
                         ({"flood": 2}, "type_norms.flood.value")):
        refused = inv.post("/api/v1/items", {**heater, "sku": "HEATER-2", "type_norms": norms})
        assert refused.status_code == 422, (norms, refused.get_json())
        problem = refused.get_json()
        assert any(name.startswith(field) for name in problem["errors"]), (norms, problem)
    assert inv.get("/api/v1/items/HEATER-2").status_code == 404
