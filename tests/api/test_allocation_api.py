"""The allocation service through its HTTP API, talking to a real inventory app."""

from __future__ import annotations

import pytest
from factories import build_tree, receive, roads_geojson


@pytest.fixture
def world(inv, alloc):
    build_tree(inv, with_roads=True)
    response = alloc.put("/api/v1/roads", roads_geojson())
    assert response.status_code == 200, response.get_json()
    receive(inv, "KL-T01", "TENT", 5)
    receive(inv, "KL", "TENT", 20)
    receive(inv, "QDN", "TENT", 100)
    return inv, alloc


def declare(alloc, **extra):
    body = {"type": "flood", "sites": [{"id": "V1", "warehouse": "KL-T01-V01",
                                        "population": 40}], **extra}
    response = alloc.as_("commander").post("/api/v1/incidents", body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def plan(alloc, incident, demands, key=None, **extra):
    return alloc.as_("commander").post(f"/api/v1/incidents/{incident['id']}/allocations",
                                       {"demands": demands, **extra},
                                       headers={"Idempotency-Key": key} if key else None)


def stock_of(inv, warehouse, item="TENT"):
    rows = inv.get(f"/api/v1/stock?warehouse={warehouse}&item={item}").get_json()["items"]
    return rows[0] if rows else {"on_hand": 0, "reserved": 0, "available": 0}


def test_thin_first_report_then_full_report(world):
    _, alloc = world
    thin = alloc.as_("integration").post("/api/v1/incidents", {
        "type": "rainstorm", "sites": [{"warehouse": "KL-T01-V01"}]})
    assert thin.status_code == 201, thin.get_json()
    body = thin.get_json()
    assert body["sites"][0]["node"] == "n-KL-T01-V01"
    assert body["sites"][0]["township"] == "KL-T01" and body["sites"][0]["county"] == "KL"
    grown = alloc.as_("commander").patch(f"/api/v1/incidents/{body['id']}", {
        "level": "IV", "title": "Rainstorm in Kaili",
        "sites": [{"id": "V1", "warehouse": "KL-T01-V01", "population": 300},
                  {"id": "V3", "warehouse": "KL-T02-V01", "population": 120}]})
    assert grown.status_code == 200, grown.get_json()
    assert grown.get_json()["level"] == "IV"
    assert [s["population"] for s in grown.get_json()["sites"]] == [300, 120]


def test_route_and_closure(world):
    _, alloc = world
    route = alloc.get("/api/v1/routes?from=KL&to=KL-T02").get_json()
    assert route["path"] == ["n-KL", "n-KL-T02"]
    assert route["geometry"]["type"] == "LineString"
    closed = alloc.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e5", "status": "closed", "reason": "landslide"}]})
    assert closed.status_code == 200, closed.get_json()
    detour = alloc.get("/api/v1/routes?from=KL&to=KL-T02").get_json()
    assert detour["path"] == ["n-KL", "n-KL-T01", "n-J1", "n-KL-T02"]
    assert detour["graph_version"] == closed.get_json()["graph_version"]
    alloc.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e6", "status": "closed"}]})
    cut = alloc.get("/api/v1/routes?from=KL&to=KL-T02-V01")
    assert cut.status_code == 422
    assert cut.mimetype == "application/problem+json"


def test_nearest_plan_holds_stock_and_dispatch_issues_it(world):
    inv, alloc = world
    incident = declare(alloc)
    response = plan(alloc, incident, [{"site": "V1", "item": "TENT", "quantity": 20}])
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["status"] == "planned"
    sent = {s["from"]: s["quantity"] for s in body["shipments"]}
    assert sent == {"KL-T01": 5, "KL": 15}
    assert body["unmet"] == []
    assert body["cost"] == pytest.approx(sum(s["quantity"] * s["minutes"]
                                             for s in body["shipments"]))
    assert stock_of(inv, "KL")["reserved"] == 15
    # The answer is made from what was written, not read back: it is what a read gives.
    read = alloc.as_("commander").get(f"/api/v1/allocations/{body['id']}").get_json()
    assert read == body
    assert {s["status"] for s in body["shipments"]} == {"planned"} and body["reservations"]
    dispatched = alloc.as_("commander").post(f"/api/v1/allocations/{body['id']}/dispatch")
    assert dispatched.status_code == 200, dispatched.get_json()
    assert dispatched.get_json()["status"] == "dispatched"
    assert stock_of(inv, "KL")["on_hand"] == 5 and stock_of(inv, "KL")["reserved"] == 0
    assert stock_of(inv, "KL-T01")["on_hand"] == 0
    again = alloc.as_("commander").post(f"/api/v1/allocations/{body['id']}/dispatch")
    assert again.status_code == 200 and stock_of(inv, "KL")["on_hand"] == 5
    shipments = dispatched.get_json()["shipments"]
    arrived = alloc.as_("commander").post(f"/api/v1/allocations/{body['id']}/deliveries", {
        "deliveries": [{"shipment": s["id"]} for s in shipments]},
        headers={"Idempotency-Key": "arrivals-1"})
    assert arrived.status_code == 200, arrived.get_json()
    assert arrived.get_json()["status"] == "delivered"
    replay = alloc.as_("commander").post(f"/api/v1/allocations/{body['id']}/deliveries", {
        "deliveries": [{"shipment": s["id"]} for s in shipments]},
        headers={"Idempotency-Key": "arrivals-1"})
    assert replay.get_json() == arrived.get_json()


def test_a_plan_is_driven_by_default_its_trips_carry_its_shipments(world):
    _, alloc = world
    incident = declare(alloc)
    body = plan(alloc, incident, [{"site": "V1", "item": "TENT", "quantity": 20}]).get_json()
    assert body["policy"]["policy"] == "backbone"
    # the incident's township first (on the spot), then its county depot
    assert {s["from"]: s["quantity"] for s in body["shipments"]} == {"KL-T01": 5, "KL": 15}
    trips = {t["from"]: t for t in body["trips"]}
    assert set(trips) == {"KL-T01", "KL"} and len(body["trips"]) == 2
    lorry = trips["KL"]
    assert (lorry["vehicle"], lorry["capacity_kg"], lorry["to"]) == ("lorry", 10_000.0, "V1")
    assert lorry["lines"] == [{"item": "TENT", "quantity": 15}]
    assert lorry["weight_kg"] == 15 * 12.5
    shipped = next(s for s in body["shipments"] if s["from"] == "KL")
    assert (lorry["minutes"], lorry["distance_km"], lorry["path"]) == (
        shipped["minutes"], shipped["distance_km"], shipped["path"])
    assert trips["KL-T01"]["vehicle"] == "van"
    assert body["objective"] == pytest.approx(body["cost"] + 2 * 3000)
    assert 0 <= body["bound"] <= body["objective"] and 0 <= body["gap"] < 1
    again = alloc.get(f"/api/v1/allocations/{body['id']}").get_json()
    assert again["trips"] == body["trips"] and again["gap"] == body["gap"]


def test_the_trip_cost_and_the_vehicles_are_the_commanders_to_set(world, allocation_app):
    _, alloc = world
    incident = declare(alloc)
    bad = plan(alloc, incident, [{"site": "V1", "item": "TENT", "quantity": 2}], trip_cost=-1)
    assert bad.status_code == 422 and "trip_cost" in bad.get_json()["errors"]
    free = plan(alloc, incident, [{"site": "V1", "item": "TENT", "quantity": 2}],
                trip_cost=0).get_json()
    assert free["objective"] == pytest.approx(free["cost"])
    assert free["policy"]["trip_cost"] == 0


def test_cancel_releases_the_hold(world):
    inv, alloc = world
    incident = declare(alloc)
    body = plan(alloc, incident, [{"site": "V1", "item": "TENT", "quantity": 20}]).get_json()
    cancelled = alloc.as_("commander").post(f"/api/v1/allocations/{body['id']}/cancel")
    assert cancelled.get_json()["status"] == "cancelled"
    assert stock_of(inv, "KL")["reserved"] == 0 and stock_of(inv, "KL")["on_hand"] == 20


def test_closed_only_road_makes_site_unmet_and_reopening_restores(world):
    _, alloc = world
    incident = declare(alloc)
    alloc.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e3", "status": "closed", "reason": "landslide"}]})
    cut = plan(alloc, incident, [{"site": "V1", "item": "TENT", "quantity": 3}]).get_json()
    assert cut["shipments"] == []
    assert cut["unmet"][0]["reason"] == "no_open_road" and cut["unmet"][0]["quantity"] == 3
    alloc.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e3", "status": "open"}]})
    restored = plan(alloc, incident, [{"site": "V1", "item": "TENT", "quantity": 3}]).get_json()
    assert restored["unmet"] == [] and restored["shipments"][0]["from"] == "KL-T01"


def test_replan_reroutes_around_a_closure(world):
    inv, alloc = world
    incident = alloc.as_("commander").post("/api/v1/incidents", {
        "type": "flood", "sites": [{"id": "V3", "warehouse": "KL-T02-V01"}]}).get_json()
    body = plan(alloc, incident, [{"site": "V3", "item": "TENT", "quantity": 10}]).get_json()
    from_kl = [s for s in body["shipments"] if s["from"] == "KL"]
    assert from_kl and "n-KL-T02" in from_kl[0]["path"]
    alloc.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e5", "status": "closed", "reason": "landslide"}]})
    replanned = alloc.as_("commander").post(f"/api/v1/allocations/{body['id']}/replan")
    assert replanned.status_code == 200, replanned.get_json()
    for shipment in replanned.get_json()["shipments"]:
        pairs = list(zip(shipment["path"], shipment["path"][1:], strict=False))
        assert ("n-KL", "n-KL-T02") not in pairs
    after = replanned.get_json()
    live = [s for s in after["shipments"] if s["status"] != "stranded"]
    carried = sorted((t["from"], line["item"], line["quantity"], t["path"] == s["path"])
                     for t in after["trips"] for line in t["lines"]
                     for s in live if (s["from"], s["to"]) == (t["from"], t["to"]))
    assert carried == sorted((s["from"], s["item"], s["quantity"], True) for s in live)
    assert after["bound"] is None and after["gap"] is None  # re-sourced, not re-optimised
    assert after["objective"] == pytest.approx(after["cost"] + 3000 * len(after["trips"]))


def test_inventory_down_gives_503_and_leaves_nothing(world, allocation_app, tmp_path):
    inv, alloc = world
    incident = declare(alloc)
    from shared.client import ServiceClient

    plans = allocation_app.extensions["allocation"]
    real = plans.inventory.client
    plans.inventory.client = ServiceClient("inventory", "http://127.0.0.1:9", "x" * 20,
                                           connect_timeout=0.5, read_timeout=0.5)
    try:
        response = plan(alloc, incident, [{"site": "V1", "item": "TENT", "quantity": 5}])
    finally:
        plans.inventory.client = real
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    assert "inventory" in response.get_json()["detail"]
    assert stock_of(inv, "KL-T01")["reserved"] == 0


def test_shortfall_beyond_stock_is_unmet_with_reason(world):
    _, alloc = world
    incident = declare(alloc)
    body = plan(alloc, incident, [{"site": "V1", "item": "TENT", "quantity": 200}]).get_json()
    assert sum(s["quantity"] for s in body["shipments"]) == 125
    assert body["unmet"][0]["quantity"] == 75
    assert body["unmet"][0]["reason"] == "no_stock_in_reach"


def test_plan_from_population_norms(world):
    _, alloc = world
    incident = declare(alloc)
    body = alloc.as_("commander").post(f"/api/v1/incidents/{incident['id']}/allocations",
                                       {"population_days": 3}).get_json()
    wanted = {d["item"]: d["quantity"] for d in body["demands"]}
    assert wanted["TENT"] == 10 and wanted["QUILT"] == 40 and wanted["WATER"] == 360


def test_a_snow_and_ice_response_derives_its_own_items(world):
    inv, alloc = world
    heater = {"sku": "HEATER", "name": "Heater", "name_zh": "取暖器", "unit": "piece",
              "unit_weight_kg": 4.0, "type_norms": {"snow_ice": {"per_person": 0.25}}}
    assert inv.post("/api/v1/items", heater).status_code == 201
    demands = {}
    for kind in ("snow_ice", "flood"):
        incident = declare(alloc, type=kind)
        body = alloc.as_("commander").post(f"/api/v1/incidents/{incident['id']}/allocations",
                                           {"population_days": 3}).get_json()
        demands[kind] = {d["item"]: d["quantity"] for d in body["demands"]}
    assert demands["snow_ice"] == {"TENT": 10, "QUILT": 40, "WATER": 360, "HEATER": 10}
    assert demands["flood"] == {"TENT": 10, "QUILT": 40, "WATER": 360}


def test_idempotent_plan_request(world):
    inv, alloc = world
    incident = declare(alloc)
    commander = alloc.as_("commander")
    path = f"/api/v1/incidents/{incident['id']}/allocations"
    demands = {"demands": [{"site": "V1", "item": "TENT", "quantity": 8}]}
    first = commander.post(path, demands, headers={"Idempotency-Key": "p-1"})
    second = commander.post(path, demands, headers={"Idempotency-Key": "p-1"})
    assert first.status_code == second.status_code == 201, first.get_json()
    assert second.get_json() == first.get_json()  # the answer kept with the plan's hold
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert stock_of(inv, "KL")["reserved"] + stock_of(inv, "KL-T01")["reserved"] == 8
    other = commander.post(path, {"demands": [{"site": "V1", "item": "TENT", "quantity": 9}]},
                           headers={"Idempotency-Key": "p-1"})
    assert other.status_code == 422


def test_a_plan_request_sent_again_while_the_first_is_under_way_is_told_to_retry(
        world, allocation_app):
    inv, alloc = world
    incident = declare(alloc)
    service = allocation_app.extensions["allocation"]
    hold, again = service.inventory.reserve, []
    tents = [{"site": "V1", "item": "TENT", "quantity": 8}]

    def sent_again_meanwhile(*args, **kwargs):  # the first has claimed its key with its record
        again.append(plan(alloc, incident, tents, key="p-twice"))
        return hold(*args, **kwargs)

    service.inventory.reserve = sent_again_meanwhile
    try:
        first = plan(alloc, incident, tents, key="p-twice")
    finally:
        service.inventory.reserve = hold
    assert first.status_code == 201, first.get_json()
    assert again[0].status_code == 409 and again[0].headers["Retry-After"] == "1"
    later = plan(alloc, incident, tents, key="p-twice")
    assert later.status_code == 201 and later.get_json() == first.get_json()
    assert stock_of(inv, "KL")["reserved"] + stock_of(inv, "KL-T01")["reserved"] == 8
    assert alloc.get("/api/v1/allocations/2").status_code == 404  # one plan made


def test_a_plan_whose_hold_failed_on_our_side_runs_again_when_retried(world, allocation_app):
    inv, alloc = world
    incident = declare(alloc)
    service = allocation_app.extensions["allocation"]
    hold = service.inventory.reserve
    tents = [{"site": "V1", "item": "TENT", "quantity": 8}]
    from shared.errors import Unavailable

    def unreachable_once(*args, **kwargs):
        service.inventory.reserve = hold
        raise Unavailable("the inventory service is unreachable")

    service.inventory.reserve = unreachable_once
    try:
        first = plan(alloc, incident, tents, key="p-again")
    finally:
        service.inventory.reserve = hold
    assert first.status_code == 503, first.get_json()  # the claim made with the record is freed
    retry = plan(alloc, incident, tents, key="p-again")
    assert retry.status_code == 201, retry.get_json()
    assert "Idempotent-Replayed" not in retry.headers
    assert stock_of(inv, "KL")["reserved"] + stock_of(inv, "KL-T01")["reserved"] == 8


def test_a_dispatch_sent_again_meanwhile_is_answered_once_and_issues_once(world, allocation_app):
    inv, alloc = world
    body = plan(alloc, declare(alloc), [{"site": "V1", "item": "TENT", "quantity": 20}]).get_json()
    service = allocation_app.extensions["allocation"]
    commit, again = service.inventory.commit, []
    path = f"/api/v1/allocations/{body['id']}/dispatch"
    commander = alloc.as_("commander")

    def sent_again_meanwhile(*args, **kwargs):  # before the first has claimed its key
        service.inventory.commit = commit
        again.append(commander.post(path, headers={"Idempotency-Key": "d-twice"}))
        return commit(*args, **kwargs)

    service.inventory.commit = sent_again_meanwhile
    try:
        first = commander.post(path, headers={"Idempotency-Key": "d-twice"})
    finally:
        service.inventory.commit = commit
    assert again[0].status_code == 200 and again[0].get_json()["status"] == "dispatched"
    assert first.status_code == 200, first.get_json()  # the copy's answer, kept with its move
    assert first.get_json() == again[0].get_json()
    assert first.headers.get("Idempotent-Replayed") == "true"
    later = commander.post(path, headers={"Idempotency-Key": "d-twice"})
    assert later.get_json() == first.get_json() and later.headers["Idempotent-Replayed"] == "true"
    assert stock_of(inv, "KL")["on_hand"] == 5 and stock_of(inv, "KL")["reserved"] == 0
    assert stock_of(inv, "KL-T01")["on_hand"] == 0


def test_a_cancel_that_failed_on_our_side_runs_again_when_retried(world, allocation_app):
    inv, alloc = world
    body = plan(alloc, declare(alloc), [{"site": "V1", "item": "TENT", "quantity": 20}]).get_json()
    service = allocation_app.extensions["allocation"]
    release = service.inventory.release
    path = f"/api/v1/allocations/{body['id']}/cancel"
    from shared.errors import Unavailable

    def unreachable_once(*args, **kwargs):
        service.inventory.release = release
        raise Unavailable("the inventory service is unreachable")

    service.inventory.release = unreachable_once
    try:
        first = alloc.as_("commander").post(path, headers={"Idempotency-Key": "c-again"})
    finally:
        service.inventory.release = release
    assert first.status_code == 503, first.get_json()
    assert stock_of(inv, "KL")["reserved"] == 15
    retry = alloc.as_("commander").post(path, headers={"Idempotency-Key": "c-again"})
    assert retry.status_code == 200 and retry.get_json()["status"] == "cancelled"
    assert "Idempotent-Replayed" not in retry.headers
    assert stock_of(inv, "KL")["reserved"] == 0 and stock_of(inv, "KL")["on_hand"] == 20


def test_a_cancel_of_a_plan_changed_meanwhile_moves_the_plan_as_it_now_is(world,
                                                                        allocation_app):
    inv, alloc = world
    body = plan(alloc, declare(alloc), [{"site": "V1", "item": "TENT", "quantity": 20}]).get_json()
    service = allocation_app.extensions["allocation"]
    release = service.inventory.release
    from datetime import UTC, datetime

    from sqlalchemy import update

    from allocation_svc.models import Plan

    def changed_meanwhile(*args, **kwargs):  # another request wrote the plan after our read
        with service.db.unit_of_work() as session:
            session.execute(update(Plan).where(Plan.id == body["id"])
                            .values(failure="noted meanwhile", updated_at=datetime.now(UTC)))
        return release(*args, **kwargs)

    service.inventory.release = changed_meanwhile
    try:
        cancelled = alloc.as_("commander").post(f"/api/v1/allocations/{body['id']}/cancel")
    finally:
        service.inventory.release = release
    assert cancelled.status_code == 200, cancelled.get_json()
    answer = cancelled.get_json()
    assert answer["status"] == "cancelled" and answer["failure"] == "noted meanwhile"
    assert {s["status"] for s in answer["shipments"]} == {"cancelled"}
    assert alloc.get(f"/api/v1/allocations/{body['id']}").get_json() == answer
    assert stock_of(inv, "KL")["reserved"] == 0


def test_a_refused_plan_request_replays_its_refusal_and_holds_nothing(world, allocation_app):
    inv, alloc = world
    incident = declare(alloc)
    service = allocation_app.extensions["allocation"]
    hold, holds = service.inventory.reserve, []

    def after_a_keeper_issued(*args, **kwargs):
        holds.append(args[0])
        issued = inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT",
                                                "kind": "issue", "quantity": 10})
        assert issued.status_code == 201, issued.get_json()
        return hold(*args, **kwargs)

    service.inventory.reserve = after_a_keeper_issued
    commander = alloc.as_("commander")
    path = f"/api/v1/incidents/{incident['id']}/allocations"
    demands = {"demands": [{"site": "V1", "item": "TENT", "quantity": 20}]}
    try:
        first = commander.post(path, demands, headers={"Idempotency-Key": "p-refused"})
        retry = commander.post(path, demands, headers={"Idempotency-Key": "p-refused"})
    finally:
        service.inventory.reserve = hold
    assert first.status_code == 409, first.get_json()
    assert "cannot be held" in first.get_json()["detail"]
    assert retry.status_code == 409 and retry.get_json() == first.get_json()
    assert retry.headers.get("Idempotent-Replayed") == "true"
    # the request re-solved once on the stock as it then was, and was refused again (the
    # keeper issued again); the replayed retry holds nothing
    assert holds == ["plan:1:hold", "plan:2:hold"], "the retry holds nothing"
    assert stock_of(inv, "KL")["reserved"] + stock_of(inv, "KL-T01")["reserved"] == 0
    assert stock_of(inv, "KL")["on_hand"] == 0
    for tried in holds:
        assert alloc.get(f"/api/v1/allocations/{tried.split(':')[1]}").get_json()["status"] \
            == "failed"


def test_a_hold_refused_because_the_stock_moved_is_solved_again_once(world, allocation_app):
    inv, alloc = world
    incident = declare(alloc)
    service = allocation_app.extensions["allocation"]
    hold, holds = service.inventory.reserve, []

    def a_keeper_issued_first(*args, **kwargs):
        holds.append(args[0])
        if len(holds) == 1:  # between the network's read and the hold: the plan is stale
            assert inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT",
                                                  "kind": "issue", "quantity": 15}
                            ).status_code == 201
        return hold(*args, **kwargs)

    service.inventory.reserve = a_keeper_issued_first
    try:
        answer = alloc.as_("commander").post(
            f"/api/v1/incidents/{incident['id']}/allocations",
            {"demands": [{"site": "V1", "item": "TENT", "quantity": 20}]})
    finally:
        service.inventory.reserve = hold
    assert answer.status_code == 201, answer.get_json()
    plan = answer.get_json()
    assert holds == ["plan:1:hold", "plan:2:hold"] and plan["id"] == 2
    assert plan["status"] == "planned"
    assert alloc.get("/api/v1/allocations/1").get_json()["status"] == "failed"
    held = sum(stock_of(inv, code)["reserved"] for code in ("KL", "KL-T01", "QDN"))
    assert held == sum(s["quantity"] for s in plan["shipments"]) == 20
    assert stock_of(inv, "KL")["reserved"] <= stock_of(inv, "KL")["on_hand"] == 5


def test_an_invalid_plan_request_replays_its_422(world):
    inv, alloc = world
    incident = declare(alloc)
    commander = alloc.as_("commander")
    path = f"/api/v1/incidents/{incident['id']}/allocations"
    wrong = {"demands": [{"site": "V9", "item": "TENT", "quantity": 2}]}
    first = commander.post(path, wrong, headers={"Idempotency-Key": "p-invalid"})
    retry = commander.post(path, wrong, headers={"Idempotency-Key": "p-invalid"})
    assert first.status_code == 422 and "demands.0.site" in first.get_json()["errors"]
    assert retry.status_code == 422 and retry.get_json() == first.get_json()
    assert stock_of(inv, "KL-T01")["reserved"] == 0


def test_replenishment_restocks_below_min_from_the_level_above(world):
    inv, alloc = world
    admin = inv
    assert admin.put("/api/v1/warehouses/KL-T01/levels", {
        "levels": [{"item": "TENT", "min": 10, "target": 30}]}).status_code == 200
    proposal = alloc.as_("commander").post("/api/v1/replenishments", {"items": ["TENT"]})
    assert proposal.status_code == 201, proposal.get_json()
    lines = proposal.get_json()["lines"]
    assert [(x["source"], x["destination"], x["item"], x["quantity"]) for x in lines] == [
        ("KL", "KL-T01", "TENT", 20), ("QDN", "KL-T01", "TENT", 5)], \
        "the county first; what it cannot spare comes from the prefecture"
    done = alloc.as_("commander").post(
        f"/api/v1/replenishments/{proposal.get_json()['id']}/execute")
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "executed"
    assert stock_of(inv, "KL")["on_hand"] == 0 and stock_of(inv, "QDN")["on_hand"] == 95
    keeper = inv.as_("keeper", "KL-T01")
    for transfer in done.get_json()["transfers"]:
        received = keeper.post(f"/api/v1/transfers/{transfer['id']}/receive", {})
        assert received.status_code == 200, received.get_json()
    assert stock_of(inv, "KL-T01")["on_hand"] == 30


def test_roles(world):
    _, alloc = world
    assert alloc.as_("keeper", "KL").post("/api/v1/incidents", {
        "type": "flood", "sites": [{"warehouse": "KL"}]}).status_code == 403
    assert alloc.as_("viewer").put("/api/v1/roads", roads_geojson()).status_code == 403


def test_a_malformed_idempotency_key_is_422_on_every_command(world):
    inv, alloc = world
    incident = declare(alloc)
    body = plan(alloc, incident, [{"site": "V1", "item": "TENT", "quantity": 2}]).get_json()
    bad = {"Idempotency-Key": "x" * 201}
    response = alloc.as_("commander").post(f"/api/v1/allocations/{body['id']}/dispatch",
                                           headers=bad)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.get_json()["errors"]
    assert alloc.get(f"/api/v1/allocations/{body['id']}").get_json()["status"] == "planned"
    receipt = inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT", "kind": "receipt",
                                             "quantity": 1}, headers=bad)
    assert receipt.status_code == 422
