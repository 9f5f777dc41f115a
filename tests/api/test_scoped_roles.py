"""Who may do what, and where (issue 11, item 5): a county commander acts on its county's
incidents and plans only, and reads everything; keepers and grid workers (`reporter`) report
roads near their depots, with a reason, and do nothing else."""

from __future__ import annotations

import pytest
from factories import build_network, receive
from harness import migrated

from gateway import tokens
from shared.errors import InvalidInput


@pytest.fixture
def world(inv, alloc):
    build_network(inv, alloc)
    receive(inv, "KL", "TENT", 50)
    receive(inv, "QDN", "TENT", 50)
    return inv, alloc


def declare(alloc, warehouse: str) -> int:
    made = alloc.post("/api/v1/incidents", {"type": "flood", "sites": [
        {"id": "S1", "warehouse": warehouse, "population": 10}]})
    assert made.status_code == 201, made.get_json()
    return made.get_json()["id"]


def planned(alloc, incident: int) -> dict:
    made = alloc.post(f"/api/v1/incidents/{incident}/allocations", {
        "demands": [{"site": "S1", "item": "TENT", "quantity": 2}]})
    assert made.status_code == 201, made.get_json()
    return made.get_json()


def test_a_county_commander_drives_its_own_plans_and_no_other(world):
    _, alloc = world
    kaili = alloc.as_("commander", "KL")
    ours, theirs = planned(alloc, declare(alloc, "KL-T01-V01")), planned(
        alloc, declare(alloc, "LP"))
    for step in ("cancel", "replan"):
        refused = kaili.post(f"/api/v1/allocations/{theirs['id']}/{step}")
        assert refused.status_code == 403, (step, refused.get_json())
        assert "LP" in refused.get_json()["detail"]
    assert kaili.post(f"/api/v1/allocations/{theirs['id']}/dispatch").status_code == 403
    assert kaili.post(f"/api/v1/allocations/{theirs['id']}/hold").status_code == 403
    assert alloc.get(f"/api/v1/allocations/{theirs['id']}").get_json()["status"] == "planned"
    assert kaili.get(f"/api/v1/allocations/{theirs['id']}").status_code == 200  # it reads all
    dispatched = kaili.post(f"/api/v1/allocations/{ours['id']}/dispatch")
    assert dispatched.status_code == 200, dispatched.get_json()
    arrivals = {"deliveries": [{"shipment": s["id"]} for s in ours["shipments"]]}
    assert kaili.post(f"/api/v1/allocations/{ours['id']}/deliveries",
                      arrivals).status_code == 200
    alloc.post(f"/api/v1/allocations/{theirs['id']}/dispatch")
    refused = kaili.post(f"/api/v1/allocations/{theirs['id']}/deliveries", {
        "deliveries": [{"shipment": s["id"]} for s in theirs["shipments"]]})
    assert refused.status_code == 403


def test_a_county_commander_amends_only_within_its_county(world):
    _, alloc = world
    kaili = alloc.as_("commander", "KL")
    incident = declare(alloc, "KL-T01-V01")
    grown = kaili.patch(f"/api/v1/incidents/{incident}", {"level": "IV", "sites": [
        {"id": "S1", "warehouse": "KL-T01-V01"}, {"id": "S2", "warehouse": "KL-T02-V01"}]})
    assert grown.status_code == 200, grown.get_json()
    across = kaili.patch(f"/api/v1/incidents/{incident}", {"sites": [
        {"id": "S1", "warehouse": "KL-T01-V01"}, {"id": "S3", "warehouse": "LP"}]})
    assert across.status_code == 403 and "LP" in across.get_json()["detail"]
    elsewhere = declare(alloc, "LP")
    assert kaili.patch(f"/api/v1/incidents/{elsewhere}", {"level": "III"}).status_code == 403
    by_node = kaili.post("/api/v1/incidents", {"type": "flood", "sites": [{"node": "n-KL"}]})
    assert by_node.status_code == 403  # a bare road node has no county to be inside
    assert alloc.get(f"/api/v1/incidents/{incident}").get_json()["level"] == "IV"


def test_a_county_commander_says_why_in_chinese(world):
    _, alloc = world
    refused = alloc.as_("commander", "KL").post(
        "/api/v1/incidents", {"type": "flood", "sites": [{"warehouse": "LP"}]},
        headers={"Accept-Language": "zh"})
    assert refused.status_code == 403 and "LP" in refused.get_json()["detail"]
    assert "范围" in refused.get_json()["detail"]


def test_restocking_the_prefecture_is_not_a_county_commanders(world):
    _, alloc = world
    refused = alloc.as_("commander", "KL").post("/api/v1/replenishments", {"items": ["TENT"]})
    assert refused.status_code == 403
    assert alloc.as_("commander").post("/api/v1/replenishments",
                                       {"items": ["TENT"]}).status_code == 201


def test_a_county_commander_moves_stock_only_out_of_its_county(world):
    inv, _ = world
    kaili = inv.as_("commander", "KL")
    lines = [{"item": "TENT", "quantity": 1}]
    inside = kaili.post("/api/v1/transfers", {"source": "KL", "destination": "KL-T01",
                                              "lines": lines})
    assert inside.status_code == 201, inside.get_json()
    outside = kaili.post("/api/v1/transfers", {"source": "QDN", "destination": "KL",
                                               "lines": lines})
    assert outside.status_code == 403
    assert "outside this commander's scope" in outside.get_json()["detail"]
    assert inv.as_("commander").post("/api/v1/transfers", {
        "source": "QDN", "destination": "KL", "lines": lines}).status_code == 201


def test_a_grid_worker_reports_near_its_village_with_a_reason(world):
    _, alloc = world
    worker = alloc.as_("reporter", "KL-T01-V01")
    slowed = worker.post("/api/v1/roads/events", {"events": [
        {"edge": "e3", "status": "degraded", "speed_factor": 0.3, "reason": "mud on the road"}]})
    assert slowed.status_code == 200, slowed.get_json()
    edge = next(f for f in alloc.get("/api/v1/roads").get_json()["features"]
                if f["properties"]["id"] == "e3")
    assert edge["properties"]["status"] == "degraded"
    silent = worker.post("/api/v1/roads/events", {"events": [
        {"edge": "e3", "status": "closed"}]})
    assert silent.status_code == 422 and "events.0.reason" in silent.get_json()["errors"]
    far = worker.post("/api/v1/roads/events", {"events": [
        {"edge": "e3", "status": "closed", "reason": "landslide"},
        {"edge": "e5", "status": "closed", "reason": "landslide"}]})
    assert far.status_code == 403 and "e5" in far.get_json()["detail"]
    reopened = worker.post("/api/v1/roads/events", {"events": [
        {"edge": "e3", "status": "open", "reason": "cleared"}]})
    assert reopened.status_code == 403  # reopening is the commander's call
    roads = alloc.get("/api/v1/roads").get_json()["features"]
    assert {f["properties"]["id"]: f["properties"].get("status") for f in roads
            if f["properties"].get("id") in ("e3", "e5")} == {"e3": "degraded", "e5": "open"}


def test_a_keeper_reports_near_its_township(world):
    _, alloc = world
    keeper = alloc.as_("keeper", "KL-T02")
    assert keeper.post("/api/v1/roads/events", {"events": [
        {"edge": "e9", "status": "closed", "reason": "bridge out"}]}).status_code == 200
    assert keeper.post("/api/v1/roads/events", {"events": [
        {"edge": "e3", "status": "closed", "reason": "bridge out"}]}).status_code == 403
    commander = alloc.as_("commander", "LP")  # a commander of any county reports anywhere
    assert commander.post("/api/v1/roads/events", {"events": [
        {"edge": "e3", "status": "closed"}]}).status_code == 200


def test_a_grid_worker_does_nothing_else(world):
    inv, alloc = world
    worker_inv, worker = inv.as_("reporter", "KL-T01-V01"), alloc.as_("reporter", "KL-T01-V01")
    incident = declare(alloc, "KL-T01-V01")
    assert worker.post("/api/v1/incidents", {"type": "flood", "sites": [
        {"warehouse": "KL-T01-V01"}]}).status_code == 403
    assert worker.post(f"/api/v1/incidents/{incident}/allocations", {
        "demands": [{"site": "S1", "item": "TENT", "quantity": 1}]}).status_code == 403
    assert worker_inv.post("/api/v1/movements", {"warehouse": "KL-T01-V01", "item": "TENT",
                                                 "kind": "receipt",
                                                 "quantity": 1}).status_code == 403
    assert worker.get(f"/api/v1/incidents/{incident}").status_code == 200
    assert worker_inv.get("/api/v1/stock?warehouse=QDN").status_code == 200


@pytest.fixture
def gateway_db(tmp_path):
    yield from migrated("gateway", f"sqlite:///{tmp_path / 'gateway.sqlite'}")


@pytest.mark.parametrize("role,warehouses,allowed", [
    ("reporter", ("KL-T01-V01",), True),
    ("reporter", (), False),  # a grid worker's token names its village
    ("commander", ("KL",), True),  # a county commander
    ("commander", (), True),  # the prefecture's
    ("integration", ("KL",), False),
])
def test_the_grants_of_the_new_roles(gateway_db, role, warehouses, allowed):
    with gateway_db.unit_of_work() as session:
        if allowed:
            assert tokens.create(session, role, warehouses).identity.scope == warehouses
        else:
            with pytest.raises(InvalidInput):
                tokens.create(session, role, warehouses)
