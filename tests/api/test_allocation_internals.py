"""Allocation pieces below the HTTP layer: the graph cache by version, the shared tree cache on
a real Redis, reconciling a plan left half-made, and the migrations."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from factories import build_network, receive, roads_geojson
from sqlalchemy import select

from allocation_svc.models import Plan
from allocation_svc.plans import derived_demands, reconcile
from shared.auth import Identity
from shared.migrate import heads

ADMIN = Identity("tester", "admin")


@pytest.fixture
def graph_world(alloc):
    assert alloc.put("/api/v1/roads", roads_geojson()).status_code == 200
    return alloc


def test_unchanged_graph_is_not_reloaded_and_events_advance_it(graph_world, allocation_app):
    plans = allocation_app.extensions["allocation"]
    cache, db = plans.graphs, plans.db
    with db.reading() as session:
        first = cache.current(session)
        assert cache.current(session) is first
    assert cache.loads == 1
    graph_world.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e5", "status": "degraded", "speed_factor": 0.5}]})
    with db.reading() as session:
        second = cache.current(session)
    assert cache.loads == 1, "a batch of road events advances the cached graph, no reload"
    assert second.version == first.version + 1
    e5 = second.table.edge_ids.index("e5")
    assert second.edge_minutes()[e5] == pytest.approx(first.edge_minutes()[e5] * 2)


@pytest.mark.skipif(not os.environ.get("EMSUPPLY_TEST_REDIS_URL"),
                    reason="set EMSUPPLY_TEST_REDIS_URL to test the shared tree cache")
def test_trees_are_shared_between_workers_through_redis():
    import redis

    from allocation_svc.geojson import roads_from_geojson
    from allocation_svc.roadgraph import RoadGraph
    from allocation_svc.treecache import RedisTreeCache

    client = redis.Redis.from_url(os.environ["EMSUPPLY_TEST_REDIS_URL"])
    namespace = f"test-{os.getpid()}-{datetime.now(UTC).timestamp()}"
    table = roads_from_geojson(roads_geojson())
    worker_a = RoadGraph(table, 7, RedisTreeCache(client, namespace))
    worker_b = RoadGraph(table, 7, RedisTreeCache(client, namespace))
    route_a = worker_a.route("n-QDN", "n-KL-T02-V01")
    route_b = worker_b.route("n-QDN", "n-KL-T02-V01")
    assert worker_a.searches == 1 and worker_b.searches == 0
    assert route_a == route_b
    for key in client.scan_iter(f"emsupply:tree:{namespace}:*"):
        client.delete(key)


@pytest.fixture
def flood(inv, alloc, allocation_app):
    """A flood at a village of KL-T01, which holds 5 tents; and the plans of the service."""
    build_network(inv, alloc)
    receive(inv, "KL-T01", "TENT", 5)
    incident = alloc.as_("commander").post("/api/v1/incidents", {
        "type": "flood", "sites": [{"id": "V1", "warehouse": "KL-T01-V01"}]}).get_json()
    return incident, allocation_app.extensions["allocation"]


def plan_four_tents(alloc, incident):
    return alloc.as_("commander").post(f"/api/v1/incidents/{incident['id']}/allocations",
                                       {"demands": [{"site": "V1", "item": "TENT",
                                                     "quantity": 4}]})


def test_plan_left_reserving_by_a_dead_process_is_reconciled(inv, flood):
    incident, plans = flood
    real_reserve = plans.inventory.reserve

    def die(*args, **kwargs):
        raise SystemExit("the worker died between writing the plan and holding its stock")

    plans.inventory.reserve = die
    with pytest.raises(SystemExit):
        plans.create(Identity("c", "commander"), incident["id"],
                     {"demands": [{"site": "V1", "item": "TENT", "quantity": 4}]})
    plans.inventory.reserve = real_reserve
    with plans.db.unit_of_work() as session:
        stuck = session.scalar(select(Plan).where(Plan.status == "reserving"))
        stuck.updated_at = datetime.now(UTC) - timedelta(minutes=5)
    assert reconcile(plans.db, plans.inventory, plans.hold_ttl_s, older_than_s=60) == 1
    settled = plans.get(stuck.id)
    assert settled.status == "failed", "nobody waits for it any more: undone, not finished"
    held = inv.get("/api/v1/stock?warehouse=KL-T01&item=TENT").get_json()["items"][0]
    assert held["reserved"] == 0
    assert reconcile(plans.db, plans.inventory, plans.hold_ttl_s, older_than_s=60) == 0


def test_a_new_plan_never_waits_on_reconciling_others(inv, flood):
    """After a crash mid-plan, the next plan is made at once; the worker settles the old one."""
    incident, plans = flood
    real_reserve, real_release = plans.inventory.reserve, plans.inventory.release

    def die(*args, **kwargs):
        raise SystemExit("the worker died between writing the plan and holding its stock")

    def hang(*args, **kwargs):
        raise AssertionError("a new plan must not wait on undoing another plan's hold")

    plans.inventory.reserve = die
    with pytest.raises(SystemExit):
        plans.create(Identity("c", "commander"), incident["id"],
                     {"demands": [{"site": "V1", "item": "TENT", "quantity": 2}]})
    plans.inventory.reserve, plans.inventory.release = real_reserve, hang
    with plans.db.unit_of_work() as session:
        stuck = session.scalar(select(Plan).where(Plan.status == "reserving"))
        stuck.updated_at = datetime.now(UTC) - timedelta(minutes=5)
    fresh = plans.create(Identity("c", "commander"), incident["id"],
                         {"demands": [{"site": "V1", "item": "TENT", "quantity": 2}]})
    assert fresh.status == "planned"
    assert plans.get(stuck.id).status == "reserving", "left for the worker"
    plans.inventory.release = real_release


def test_a_hold_made_but_answered_too_late_is_undone(inv, alloc, flood, monkeypatch):
    """The inventory holds the stock, but its answer comes after the read timeout: the plan
    must not keep the stock held for nobody."""
    from shared.errors import UpstreamTimeout

    incident, plans = flood
    real_reserve, calls = plans.inventory.reserve, []

    def late(*args, **kwargs):
        answer = real_reserve(*args, **kwargs)
        calls.append(answer["id"])
        if len(calls) == 1:
            raise UpstreamTimeout("the inventory service did not answer in time")
        return answer

    monkeypatch.setattr(plans.inventory, "reserve", late)
    response = plan_four_tents(alloc, incident)
    assert response.status_code == 504
    assert calls[0] == calls[1], "the undo found the same hold through its idempotency key"
    held = inv.get("/api/v1/stock?warehouse=KL-T01&item=TENT").get_json()["items"][0]
    assert held["reserved"] == 0
    with plans.db.reading() as session:
        assert session.scalar(select(Plan.status)) == "failed"


def test_a_plan_settled_by_another_process_during_its_hold_is_not_marked_held(
        inv, alloc, flood, monkeypatch):
    """The plan is marked held by an UPDATE guarded by the status it was written with: when
    `reconcile` failed it meanwhile, the answer is the refusal and the plan stays failed."""
    incident, plans = flood
    real_reserve = plans.inventory.reserve

    def reconciled_meanwhile(*args, **kwargs):
        answer = real_reserve(*args, **kwargs)
        with plans.db.unit_of_work() as session:
            plan = session.scalars(select(Plan)).one()
            plan.status = "failed"
            for shipment in plan.shipments:
                shipment.status = "failed"
        return answer

    monkeypatch.setattr(plans.inventory, "reserve", reconciled_meanwhile)
    response = plan_four_tents(alloc, incident)
    assert response.status_code == 409, response.get_json()
    with plans.db.reading() as session:
        plan = session.scalars(select(Plan)).one()
        assert plan.status == "failed" and plan.reservations == []
        assert {shipment.status for shipment in plan.shipments} == {"failed"}
        assert {shipment.reservation_id for shipment in plan.shipments} == {None}


def test_a_site_off_the_road_network_is_422_not_500(inv, alloc):
    build_network(inv, alloc)
    incident = alloc.as_("commander").post("/api/v1/incidents", {
        "type": "flood", "sites": [{"id": "X", "node": "nowhere"}]}).get_json()
    response = alloc.as_("commander").post(
        f"/api/v1/incidents/{incident['id']}/allocations",
        {"demands": [{"site": "X", "item": "TENT", "quantity": 1}]})
    assert response.status_code == 422
    assert "nowhere" in response.get_json()["detail"]


def test_derived_demands_follow_the_norms():
    sites = [{"id": "A", "population": 10}, {"id": "B", "population": 0}]
    items = [{"sku": "TENT", "per_person": 0.25, "per_person_day": 0},
             {"sku": "WATER", "per_person": 0, "per_person_day": 3},
             {"sku": "SAW", "per_person": 0, "per_person_day": 0}]
    assert derived_demands(sites, items, 2) == [
        {"site": "A", "item": "TENT", "quantity": 3, "priority": 2},
        {"site": "A", "item": "WATER", "quantity": 60, "priority": 1}]


def test_road_import_errors_name_the_feature(alloc):
    doc = roads_geojson()
    doc["features"][-1]["properties"]["length_km"] = -3
    response = alloc.put("/api/v1/roads", doc)
    assert response.status_code == 422
    assert "length_km" in response.get_json()["detail"]
    assert alloc.get("/api/v1/roads").status_code == 404


def test_allocation_migrations_have_one_head():
    assert len(heads("allocation_svc")) == 1


def test_allocation_schema_matches_the_models(allocation_db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from allocation_svc.models import Base

    with allocation_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_unknown_road_event_edge_is_422_and_changes_nothing(graph_world):
    before = graph_world.get("/api/v1/roads").get_json()["graph_version"]
    response = graph_world.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e1", "status": "closed"}, {"edge": "nope", "status": "closed"}]})
    assert response.status_code == 422
    assert "events.1.edge" in response.get_json()["errors"]
    after = graph_world.get("/api/v1/roads").get_json()
    assert after["graph_version"] == before
    e1 = next(f for f in after["features"] if f["properties"].get("id") == "e1")
    assert e1["properties"]["status"] == "open"
