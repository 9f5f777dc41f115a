"""The plan service over an inventory in memory (no HTTP): holds, refusals, an inventory out of
reach, reconcile, dispatch and cancel, re-sourcing a cut-off shipment. The plan's own database
is SQLite in a temporary directory."""

from __future__ import annotations

import pytest
from factories import roads_geojson
from fakes import FakeInventory

from allocation_svc import incidents, roads
from allocation_svc.geojson import roads_from_geojson
from allocation_svc.permissions import PERMISSIONS
from allocation_svc.plans import Allocation, reconcile, record_deliveries
from shared import auth
from shared.auth import Identity
from shared.client import RemoteError
from shared.db import Database
from shared.errors import Conflict, Forbidden, Unavailable, UpstreamTimeout
from shared.migrate import upgrade

ADMIN = Identity("admin-1", "admin")
COMMANDER = Identity("commander-1", "commander")
TTL = 900


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path / 'allocation.sqlite'}"
    upgrade("allocation_svc", url)
    database = Database(url)
    with database.unit_of_work() as session:
        roads.replace_network(session, ADMIN, roads_from_geojson(roads_geojson()))
    yield database
    database.dispose()


@pytest.fixture
def inventory():
    fake = FakeInventory()
    fake.receive("KL-T01", "TENT", 5)
    fake.receive("KL", "TENT", 20)
    fake.receive("QDN", "TENT", 100)
    return fake


@pytest.fixture
def service(db, inventory):
    return Allocation(db, inventory, roads.GraphCache(), hold_ttl_s=TTL)


def incident(service, site="KL-T01-V01") -> int:
    with service.db.unit_of_work() as session:
        declared = incidents.declare(session, COMMANDER, {
            "type": "flood", "sites": [{"id": "V1", "warehouse": site}]}, service.inventory)
        return declared.id


def plan(service, quantity, **extra):
    return service.create(COMMANDER, incident(service), {
        "demands": [{"site": "V1", "item": "TENT", "quantity": quantity}], **extra})


def sent(plan_) -> dict[str, int]:
    return {s.source: s.quantity for s in plan_.shipments if s.status != "stranded"}


def test_a_plan_holds_what_it_ships(service, inventory):
    made = plan(service, 20)
    assert made.status == "planned"
    assert sent(made) == {"KL-T01": 5, "KL": 15}
    [hold_id] = made.reservations
    assert inventory.holds[hold_id]["lines"] == {("KL-T01", "TENT"): 5, ("KL", "TENT"): 15}
    assert inventory.holds[hold_id]["ttl_s"] == TTL
    assert {s.status for s in made.shipments} == {"planned"}
    assert {s.reservation_id for s in made.shipments} == {hold_id}
    assert inventory.stock("KL", "TENT")["reserved"] == 15
    assert service.get(made.id).status == "planned"


def test_a_refused_hold_fails_the_plan_and_the_refusal_reaches_the_caller(service, inventory):
    hold = inventory.reserve

    def after_a_keeper_issued(*args, **kwargs):
        inventory.issue("KL", "TENT", 10)  # between the plan's snapshot and its hold
        return hold(*args, **kwargs)

    inventory.reserve = after_a_keeper_issued
    with pytest.raises(RemoteError) as refused:
        plan(service, 20)
    assert refused.value.status == 409
    assert inventory.reserved() == 0
    # solved again once on the stock as it then was, and refused again (the keeper again)
    tried = _plans(service)
    assert len(tried) == 2
    for failed in tried:
        assert failed.status == "failed" and "cannot be held" in failed.failure
        assert {s.status for s in failed.shipments} == {"failed"}
        assert failed.reservations == []


def test_an_inventory_out_of_reach_when_holding_leaves_the_plan_reserving(service, inventory):
    inventory.unreachable = {"reserve"}
    with pytest.raises(Unavailable):
        plan(service, 4)
    [stuck] = _plans(service)
    assert stuck.status == "reserving", "the hold cannot be known undone: reconcile settles it"
    assert inventory.reserved() == 0
    assert reconcile(service.db, inventory, TTL, older_than_s=0) == 0, "still out of reach"
    inventory.unreachable = set()
    assert reconcile(service.db, inventory, TTL, older_than_s=0) == 1
    assert service.get(stuck.id).status == "failed"
    assert inventory.reserved() == 0


def test_a_hold_answered_too_late_is_undone_and_the_plan_fails(service, inventory):
    inventory.late = {"reserve"}
    with pytest.raises(UpstreamTimeout):
        plan(service, 4)
    [failed] = _plans(service)
    assert failed.status == "failed"
    assert len(inventory.holds) == 1, "the undo found the same hold by its key"
    assert inventory.holds[1]["status"] == "released" and inventory.reserved() == 0


def test_reconcile_undoes_the_hold_of_a_plan_left_reserving(service, inventory):
    inventory.late, inventory.unreachable = {"reserve"}, {"release"}
    with pytest.raises(UpstreamTimeout):
        plan(service, 4)
    [stuck] = _plans(service)
    assert stuck.status == "reserving" and inventory.reserved() == 4
    inventory.unreachable = set()
    assert reconcile(service.db, inventory, TTL, older_than_s=3600) == 0, "not old enough"
    assert reconcile(service.db, inventory, TTL, older_than_s=0) == 1
    settled = service.get(stuck.id)
    assert settled.status == "failed" and "abandoned" in settled.failure
    assert {s.status for s in settled.shipments} == {"failed"}
    assert inventory.reserved() == 0 and len(inventory.holds) == 1
    assert reconcile(service.db, inventory, TTL, older_than_s=0) == 0


def test_dispatch_commits_once(service, inventory):
    made = plan(service, 20)
    dispatched = service.dispatch(COMMANDER, made.id)
    assert dispatched.status == "dispatched"
    assert {s.status for s in dispatched.shipments} == {"dispatched"}
    assert inventory.stock("KL", "TENT") == {"on_hand": 5, "reserved": 0, "min": 0, "target": 0}
    commits = inventory.calls.count("commit")
    again = service.dispatch(COMMANDER, made.id)
    assert again.status == "dispatched" and inventory.calls.count("commit") == commits
    with pytest.raises(Conflict, match="its stock has left the depots"):
        service.cancel(COMMANDER, made.id)


def test_cancel_releases_once(service, inventory):
    made = plan(service, 20)
    cancelled = service.cancel(COMMANDER, made.id)
    assert cancelled.status == "cancelled"
    assert {s.status for s in cancelled.shipments} == {"cancelled"}
    assert inventory.stock("KL", "TENT")["on_hand"] == 20 and inventory.reserved() == 0
    releases = inventory.calls.count("release")
    assert service.cancel(COMMANDER, made.id).status == "cancelled"
    assert inventory.calls.count("release") == releases
    with pytest.raises(Conflict, match="only a planned plan is dispatched"):
        service.dispatch(COMMANDER, made.id)
    assert inventory.calls.count("commit") == 0


def test_deliveries_finish_a_dispatched_plan(service):
    made = service.dispatch(COMMANDER, plan(service, 20).id)
    first, second = made.shipments
    with service.db.unit_of_work() as session:
        partly = record_deliveries(session, COMMANDER, made.id, {"deliveries": [
            {"shipment": first.id}, {"shipment": second.id, "quantity": 1}]})
        assert partly.status == "dispatched"
    with service.db.unit_of_work() as session:
        done = record_deliveries(session, COMMANDER, made.id,
                                 {"deliveries": [{"shipment": second.id}]})
        assert done.status == "delivered"
    assert {s.status for s in service.get(made.id).shipments} == {"delivered"}


def test_replan_resources_a_cut_off_shipment(service, inventory):
    made = plan(service, 30)
    assert sent(made) == {"KL-T01": 5, "KL": 20, "QDN": 5}
    inventory.receive("KL-T02", "TENT", 10)  # stock that came in after the plan
    _close(service, "e1")  # QDN's only road towards the site
    replanned = service.replan(COMMANDER, made.id)
    stranded = [s for s in replanned.shipments if s.status == "stranded"]
    assert [(s.source, s.quantity) for s in stranded] == [("QDN", 5)]
    assert sent(replanned) == {"KL-T01": 5, "KL": 20, "KL-T02": 5}
    assert len(replanned.reservations) == 2
    assert inventory.stock("QDN", "TENT")["reserved"] == 0, "the cut-off hold is freed"
    assert inventory.stock("KL-T02", "TENT")["reserved"] == 5
    assert replanned.cost == pytest.approx(sum(s.quantity * s.minutes
                                               for s in replanned.shipments
                                               if s.status != "stranded"))
    holds = len(inventory.holds)
    again = service.replan(COMMANDER, made.id)
    assert len(inventory.holds) == holds and sent(again) == sent(replanned)
    service.dispatch(COMMANDER, made.id)
    assert inventory.reserved() == 0
    assert inventory.stock("KL-T02", "TENT")["on_hand"] == 5
    assert inventory.stock("QDN", "TENT")["on_hand"] == 100


def test_replan_of_a_dispatched_plan_issues_the_replacement_at_once(service, inventory):
    made = service.dispatch(COMMANDER, plan(service, 30).id)
    inventory.receive("KL-T02", "TENT", 10)
    _close(service, "e1")
    replanned = service.replan(COMMANDER, made.id)
    new = [s for s in replanned.shipments if s.source == "KL-T02"]
    assert [(s.quantity, s.status) for s in new] == [(5, "dispatched")]
    assert inventory.stock("KL-T02", "TENT") == {"on_hand": 5, "reserved": 0, "min": 0,
                                                 "target": 0}
    assert inventory.calls.count("release_part") == 0, "dispatched stock is not held any more"


def test_a_cancelled_plan_is_not_replanned(service):
    made = plan(service, 5)
    service.cancel(COMMANDER, made.id)
    with pytest.raises(Conflict, match="only planned or dispatched plans are re-planned"):
        service.replan(COMMANDER, made.id)


def test_only_planners_plan(service, inventory):
    with pytest.raises(Forbidden):
        service.create(Identity("k-1", "keeper", ("KL",)), incident(service),
                       {"demands": [{"site": "V1", "item": "TENT", "quantity": 1}]})
    assert inventory.calls.count("network") == 0


def test_the_permission_table_names_only_known_roles():
    assert PERMISSIONS["plans.write"] == ("admin", "commander", "integration")
    for action, roles in PERMISSIONS.items():
        assert roles and set(roles) <= set(auth.ROLES), action


def _plans(service):
    from sqlalchemy import select

    from allocation_svc.models import Plan

    with service.db.reading() as session:
        return list(session.scalars(select(Plan).order_by(Plan.id)))


def _close(service, edge: str) -> None:
    with service.db.unit_of_work() as session:
        roads.report_events(session, COMMANDER, {"events": [{"edge": edge, "status": "closed"}]})


# -- warm start (issue 12: a nation's graph and network are read before the first plan asks) --

def test_a_warm_start_loads_the_graph_and_reads_the_network_before_any_plan(service, inventory):
    assert service.warm(tries=1, pause_s=0) is True
    assert service.graphs.loads == 1 and inventory.calls == ["network"]
    assert plan(service, 5).status == "planned"
    assert service.graphs.loads == 1  # the plan found the graph loaded


def test_a_warm_start_waits_for_an_inventory_that_is_still_starting(service, inventory,
                                                                     monkeypatch):
    inventory.unreachable.add("network")
    pauses = []

    def pause(seconds):  # the inventory comes up during the second pause
        pauses.append(seconds)
        if len(pauses) == 2:
            inventory.unreachable.clear()

    monkeypatch.setattr("allocation_svc.plans.time.sleep", pause)
    assert service.warm(tries=5, pause_s=1.5) is True
    assert pauses == [1.5, 1.5] and inventory.calls.count("network") == 3


def test_a_warm_start_gives_up_and_leaves_the_reading_to_the_first_plan(service, inventory,
                                                                        monkeypatch):
    inventory.unreachable.add("network")
    monkeypatch.setattr("allocation_svc.plans.time.sleep", lambda _s: None)
    assert service.warm(tries=3) is False and inventory.calls.count("network") == 3
    inventory.unreachable.clear()
    assert plan(service, 5).status == "planned"


def test_a_warm_start_without_a_road_network_reads_the_stock(tmp_path, inventory):
    url = f"sqlite:///{tmp_path / 'bare.sqlite'}"
    upgrade("allocation_svc", url)
    database = Database(url)
    try:
        bare = Allocation(database, inventory, roads.GraphCache(), hold_ttl_s=TTL)
        assert bare.warm(tries=1) is True and inventory.calls == ["network"]
        assert bare.graphs.loads == 0
    finally:
        database.dispose()
