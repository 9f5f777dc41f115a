"""The response as the prefecture runs it (issue 11, items 1, 3, 7, 9): a hold that runs out is
its own status and can be held again; an incident keeps every amendment and says when it
escalates; a closure on a plan's route is published; the re-sourcing branch of re-plan; a drill
plans like a real response without holding or moving stock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from factories import build_network, receive
from sqlalchemy import text

from allocation_svc.plans import lapse_due


@pytest.fixture
def world(inv, alloc):
    build_network(inv, alloc)
    receive(inv, "KL", "TENT", 40)
    return inv, alloc


def declare(alloc, site="KL-T01-V01", **extra):
    answer = alloc.as_("commander").post("/api/v1/incidents", {
        "type": "flood", "sites": [{"id": "V", "warehouse": site}], **extra})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def plan(alloc, incident, quantity=10):
    answer = alloc.as_("commander").post(f"/api/v1/incidents/{incident['id']}/allocations",
                                         {"demands": [{"site": "V", "item": "TENT",
                                                       "quantity": quantity}]})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def stock(inv, warehouse, item="TENT"):
    rows = inv.get(f"/api/v1/stock?warehouse={warehouse}&item={item}").get_json()["items"]
    return rows[0] if rows else {"on_hand": 0, "reserved": 0, "available": 0}


def events(database, kind: str) -> list[dict]:
    with database.engine.connect() as conn:
        rows = conn.execute(text("SELECT data FROM outbox WHERE type = :t ORDER BY id"),
                            {"t": kind}).scalars()
        return [row if isinstance(row, dict) else json.loads(row) for row in rows]


def run_out(inventory_db, allocation_db, plan_id: int, reservations: list[int]) -> None:
    """The hold's time passes, in both services' books."""
    past = datetime.now(UTC) - timedelta(seconds=30)
    with inventory_db.engine.begin() as conn:
        for reservation in reservations:
            conn.execute(text("UPDATE reservations SET expires_at = :t WHERE id = :id"),
                         {"t": past, "id": reservation})
    with allocation_db.engine.begin() as conn:
        conn.execute(text("UPDATE plans SET hold_expires_at = :t WHERE id = :id"),
                     {"t": past, "id": plan_id})


# ---- 1. no silent expiry ------------------------------------------------------------------------

def test_a_hold_that_ran_out_is_lapsed_and_can_be_held_again(world, inventory_db, allocation_db):
    inv, alloc = world
    made = plan(alloc, declare(alloc))
    assert made["status"] == "planned" and made["hold_expires_at"]
    held_until = datetime.fromisoformat(made["hold_expires_at"].replace("Z", "+00:00"))
    assert timedelta(seconds=850) < held_until - datetime.now(UTC) <= timedelta(seconds=900)
    run_out(inventory_db, allocation_db, made["id"], made["reservations"])
    refused = alloc.as_("commander").post(f"/api/v1/allocations/{made['id']}/dispatch")
    assert refused.status_code == 409
    assert "hold it again" in refused.get_json()["detail"]
    assert f"/api/v1/allocations/{made['id']}/hold" in refused.get_json()["detail"]
    lapsed = alloc.get(f"/api/v1/allocations/{made['id']}").get_json()
    assert lapsed["status"] == "lapsed"
    assert {s["status"] for s in lapsed["shipments"]} == {"lapsed"}
    assert [e["id"] for e in events(allocation_db, "allocation.lapsed")] == [made["id"]]
    assert stock(inv, "KL")["reserved"] == 0  # the stock is free for others meanwhile
    again = alloc.as_("commander").post(f"/api/v1/allocations/{made['id']}/hold")
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["status"] == "planned"
    assert again.get_json()["reservations"] != made["reservations"]
    assert stock(inv, "KL")["reserved"] == 10
    retry = alloc.as_("commander").post(f"/api/v1/allocations/{made['id']}/hold")
    assert retry.status_code == 200 and retry.get_json()["reservations"] == \
        again.get_json()["reservations"]
    assert stock(inv, "KL")["reserved"] == 10
    sent = alloc.as_("commander").post(f"/api/v1/allocations/{made['id']}/dispatch")
    assert sent.status_code == 200 and sent.get_json()["status"] == "dispatched"
    assert stock(inv, "KL")["on_hand"] == 30


def test_the_worker_lapses_plans_whose_hold_ran_out_and_a_lapsed_plan_can_be_cancelled(
        world, inventory_db, allocation_db):
    inv, alloc = world
    incident = declare(alloc)
    first, second = plan(alloc, incident), plan(alloc, incident, 5)
    run_out(inventory_db, allocation_db, first["id"], first["reservations"])
    assert lapse_due(allocation_db) == 1
    assert lapse_due(allocation_db) == 0
    assert alloc.get(f"/api/v1/allocations/{first['id']}").get_json()["status"] == "lapsed"
    assert alloc.get(f"/api/v1/allocations/{second['id']}").get_json()["status"] == "planned"
    gone = alloc.as_("commander").post(f"/api/v1/allocations/{first['id']}/cancel")
    assert gone.status_code == 200 and gone.get_json()["status"] == "cancelled"
    assert stock(inv, "KL")["reserved"] == 5  # the second plan's hold only


def test_holding_again_after_the_stock_went_elsewhere_is_refused_and_stays_lapsed(
        world, inventory_db, allocation_db):
    inv, alloc = world
    made = plan(alloc, declare(alloc), 30)
    run_out(inventory_db, allocation_db, made["id"], made["reservations"])
    assert lapse_due(allocation_db) == 1
    taken = inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT", "kind": "issue",
                                           "quantity": 25})
    assert taken.status_code == 201, taken.get_json()
    refused = alloc.as_("commander").post(f"/api/v1/allocations/{made['id']}/hold")
    assert refused.status_code == 409, refused.get_json()
    assert alloc.get(f"/api/v1/allocations/{made['id']}").get_json()["status"] == "lapsed"


# ---- 3. the incident's record -------------------------------------------------------------------

def test_every_amendment_is_kept_and_an_escalation_is_published(world, allocation_db):
    _, alloc = world
    incident = declare(alloc)
    commander = alloc.as_("commander", actor="李伟")
    for change in ({"level": "IV", "title": "Flood in Kaili"}, {"level": "IV"},
                   {"level": "III"}, {"sites": [{"id": "V", "warehouse": "KL-T01-V01",
                                                 "population": 300}]}):
        answer = commander.patch(f"/api/v1/incidents/{incident['id']}", change)
        assert answer.status_code == 200, answer.get_json()
    record = alloc.get(f"/api/v1/incidents/{incident['id']}").get_json()
    history = record["history"]
    assert [entry["changes"] for entry in history] == [
        {"level": {"from": None, "to": "IV"}, "title": {"from": None, "to": "Flood in Kaili"}},
        {"level": {"from": "IV", "to": "III"}},
        {"sites": {"from": [{"id": "V", "population": 0}],
                   "to": [{"id": "V", "population": 300}]}}]  # an unchanged PATCH is no entry
    assert {entry["actor"] for entry in history} == {"李伟"}
    assert all(entry["at"].endswith("Z") for entry in history)
    updated = events(allocation_db, "incident.updated")
    assert [e["changes"] for e in updated] == [entry["changes"] for entry in history]
    assert events(allocation_db, "incident.escalated") == [
        {"id": incident["id"], "actor": "李伟", "from": "IV", "to": "III", "drill": False}]
    (declared,) = events(allocation_db, "incident.declared")
    assert declared["actor"] and declared["drill"] is False


# ---- 7. closures that hit plans -----------------------------------------------------------------

def test_a_closure_on_a_route_publishes_the_plans_and_trips_it_hits(world, allocation_db):
    _, alloc = world
    made = plan(alloc, declare(alloc))
    (shipment,) = made["shipments"]
    assert shipment["from"] == "KL" and "n-KL-T01" in shipment["path"]
    elsewhere = alloc.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e7", "status": "closed", "reason": "landslide"}]})
    assert elsewhere.status_code == 200
    assert events(allocation_db, "allocation.affected") == []
    closed = alloc.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e2", "status": "closed", "reason": "landslide"}]})
    (affected,) = events(allocation_db, "allocation.affected")
    assert affected["id"] == made["id"] and affected["status"] == "planned"
    assert affected["graph_version"] == closed.get_json()["graph_version"]
    assert affected["edges"] == [{"edge": "e2", "status": "closed"}]
    assert affected["shipments"] == [shipment["id"]] and affected["units"] == 10
    assert affected["trips"] == [{"from": "KL", "to": "V", "vehicle": "lorry"}]
    assert alloc.get(f"/api/v1/allocations/{made['id']}").get_json()["status"] == "planned"


def test_a_replan_resources_what_a_closure_cut_off(world):
    inv, alloc = world
    receive(inv, "LP", "TENT", 10)
    inv.post("/api/v1/movements", {"warehouse": "KL", "item": "TENT", "kind": "issue",
                                   "quantity": 40})
    incident = declare(alloc, site="KL-T02-V01")
    made = plan(alloc, incident)
    assert {s["from"] for s in made["shipments"]} == {"LP"}
    receive(inv, "QDN", "TENT", 10)
    alloc.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e7", "status": "closed", "reason": "landslide"}]})
    replanned = alloc.as_("commander").post(f"/api/v1/allocations/{made['id']}/replan")
    assert replanned.status_code == 200, replanned.get_json()
    body = replanned.get_json()
    by_status = {s["status"]: s for s in body["shipments"]}
    assert by_status["stranded"]["from"] == "LP"
    assert by_status["planned"]["from"] == "QDN" and by_status["planned"]["quantity"] == 10
    assert [t["from"] for t in body["trips"]] == ["QDN"]
    assert stock(inv, "LP")["reserved"] == 0 and stock(inv, "QDN")["reserved"] == 10
    assert len(body["reservations"]) == 2


# ---- 9. drills ----------------------------------------------------------------------------------

def test_a_drill_plans_dispatches_and_replans_without_holding_or_moving_stock(
        world, allocation_db):
    inv, alloc = world
    incident = declare(alloc, drill=True)
    assert incident["drill"] is True
    made = plan(alloc, incident)
    assert made["drill"] is True and made["status"] == "planned"
    assert made["reservations"] == [] and made["hold_expires_at"] is None
    assert stock(inv, "KL")["reserved"] == 0
    alloc.as_("commander").post("/api/v1/roads/events", {
        "events": [{"edge": "e2", "status": "closed"}]})
    replanned = alloc.as_("commander").post(f"/api/v1/allocations/{made['id']}/replan")
    assert replanned.status_code == 200, replanned.get_json()
    sent = alloc.as_("commander").post(f"/api/v1/allocations/{made['id']}/dispatch")
    assert sent.status_code == 200 and sent.get_json()["status"] == "dispatched"
    assert (stock(inv, "KL")["on_hand"], stock(inv, "KL")["reserved"]) == (40, 0)
    assert all(e["drill"] for e in events(allocation_db, "allocation.planned"))
    assert all(e["drill"] for e in events(allocation_db, "allocation.dispatched"))
    assert lapse_due(allocation_db, datetime.now(UTC) + timedelta(days=1)) == 0


# ---- 6. audit: every change says who made it -----------------------------------------------------

def test_every_event_names_its_actor_and_catalogue_changes_are_events(
        world, inventory_db, allocation_db):
    inv, alloc = world
    commander = alloc.as_("commander", actor="李伟")
    incident = commander.post("/api/v1/incidents", {
        "type": "flood", "sites": [{"id": "V", "warehouse": "KL-T01-V01"}]}).get_json()
    made = commander.post(f"/api/v1/incidents/{incident['id']}/allocations", {
        "demands": [{"site": "V", "item": "TENT", "quantity": 4}]}).get_json()
    sent = commander.post(f"/api/v1/allocations/{made['id']}/dispatch").get_json()
    arrived = commander.post(f"/api/v1/allocations/{made['id']}/deliveries", {
        "deliveries": [{"shipment": sent["shipments"][0]["id"]}]})
    assert arrived.status_code == 200, arrived.get_json()
    for kind in ("incident.declared", "allocation.planned", "allocation.dispatched",
                 "allocation.delivered"):
        assert [e["actor"] for e in events(allocation_db, kind)] == ["李伟"], kind
    (delivered,) = events(allocation_db, "allocation.delivered")
    assert delivered["arrived"] == [{"shipment": sent["shipments"][0]["id"], "quantity": 4}]
    second = plan(alloc, incident, 2)
    run_out(inventory_db, allocation_db, second["id"], second["reservations"])
    lapse_due(allocation_db)
    assert [e["actor"] for e in events(allocation_db, "allocation.lapsed")] == ["system"]
    admin = inv.as_("admin", actor="王芳")
    assert admin.patch("/api/v1/warehouses/KL-T01", {"name_zh": "大风洞镇",
                                                     "status": "active"}).status_code == 200
    assert admin.put("/api/v1/warehouses/KL/levels", {"levels": [
        {"item": "TENT", "min": 5, "target": 20}]}).status_code == 200
    changed = events(inventory_db, "catalog.changed")
    assert [(e["entity"], e["code"], e["action"]) for e in changed] == [
        ("warehouse", "KL-T01", "updated"), ("levels", "KL", "updated")]
    renamed = next(e for e in changed if e["action"] == "updated" and e["entity"] == "warehouse")
    assert renamed["changes"] == {"name_zh": {"from": None, "to": "大风洞镇"}}  # status as was
    assert renamed["actor"] == "王芳"
    levels = next(e for e in changed if e["entity"] == "levels")
    assert levels["changes"] == {"TENT": {"from": [0, 0], "to": [5, 20]}}
    (moved,) = [e for e in events(inventory_db, "stock.changed") if e["kind"] == "issue"]
    # the inventory knows the service that committed the hold; the plan's event, the person
    assert moved["actor"] == "allocation-service"
