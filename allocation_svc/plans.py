"""The plan service: a plan solved, recorded, held in the inventory, dispatched or cancelled,
delivered, re-planned after road events, each step as `lifecycle` decides.

No transaction is held open across a call to the inventory service. A plan is first written as
`reserving`, then held (one all-or-none reservation, idempotent by the plan id), then marked
`planned`. A plan left `reserving` by a process that died is settled by `reconcile` (run by the
background worker, and before every new plan), and its unconfirmed hold expires by itself in
any case. The request's Idempotency-Key is the web layer's (`shared.web.run_command`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from allocation_svc import incidents, lifecycle, roads, solver
from allocation_svc.inventory import Inventory, Network
from allocation_svc.models import Plan, Shipment, outbox
from allocation_svc.permissions import require
from allocation_svc.roadgraph import NoRoute, RoadGraph, Route
from allocation_svc.vocabulary import ACTIVE, NEAREST
from shared import events
from shared.auth import Identity
from shared.client import RemoteError
from shared.db import Database
from shared.errors import InvalidInput, NotFound, Unavailable, UpstreamTimeout


@dataclass
class Allocation:
    """What plans need: their database, the inventory, the graphs of this process, and how long
    a plan's hold lives before it frees itself."""

    db: Database
    inventory: Inventory
    graphs: roads.GraphCache
    hold_ttl_s: int

    # -- making a plan ---------------------------------------------------------------------
    def create(self, identity: Identity, incident_id: int, data: dict[str, Any]) -> Plan:
        """Solve, record the plan as `reserving`, hold its stock: `planned`, or the refusal."""
        require(identity, "plans.write")
        reconcile(self.db, self.inventory, self.hold_ttl_s)
        with self.db.reading() as session:
            incident = incidents.get(session, incident_id)
            graph = roads.ensure_network(session, self.graphs)
            sites, level = list(incident.sites), incident.level
        demands = self._demands(sites, data)
        _check_on_network(graph, demands)
        result = self._solve(graph, sites, demands, _policy(data, level))
        return self._hold(self._record(identity, incident_id, graph.version, data, demands,
                                       result))

    def _demands(self, sites: list[dict], data: dict[str, Any]) -> list[solver.Demand]:
        by_id = {site["id"]: site for site in sites}
        wanted: list[dict] = []
        for index, demand in enumerate(data.get("demands") or []):
            if demand["site"] not in by_id:
                raise InvalidInput(f"demand {index} names site {demand['site']!r}, which is not "
                                   "a site of this incident",
                                   errors={f"demands.{index}.site": ["not a site of the "
                                                                     "incident"]})
            wanted.append(demand)
        if data.get("population_days"):
            wanted.extend(derived_demands(sites, self.inventory.items(), data["population_days"]))
        if not wanted:
            raise InvalidInput("nothing to plan: give demands, or population_days with sites "
                               "that have a population",
                               errors={"demands": ["give demands or population_days"]})
        merged: dict[tuple[str, str, int], int] = {}
        for demand in wanted:
            slot = (demand["site"], demand["item"], demand.get("priority", 2))
            merged[slot] = merged.get(slot, 0) + demand["quantity"]
        return [solver.Demand(site=site, node=by_id[site]["node"], item=item, quantity=quantity,
                              priority=priority, township=by_id[site]["township"],
                              county=by_id[site]["county"])
                for (site, item, priority), quantity in merged.items()]

    def _solve(self, graph: RoadGraph, sites: list[dict], demands: list[solver.Demand],
               policy: solver.Policy) -> solver.Plan:
        items = sorted({d.item for d in demands})
        network = self.inventory.network(items)
        return solver.solve(graph, depots(network, sites, graph, items), demands, policy)

    def _record(self, identity: Identity, incident_id: int, version: int, data: dict[str, Any],
                demands: list[solver.Demand], result: solver.Plan) -> Plan:
        now = datetime.now(UTC)
        plan = Plan(incident_id=incident_id, status=lifecycle.RESERVING, graph_version=version,
                    policy={k: data.get(k) for k in ("policy", "max_minutes", "keep_min")},
                    demands=[demand_json(d) for d in demands],
                    unmet=[unmet_json(u) for u in result.unmet], cost=result.cost,
                    reservations=[], created_by=identity.actor, created_at=now, updated_at=now)
        plan.shipments = [shipment_row(s, lifecycle.RESERVING) for s in result.shipments]
        with self.db.unit_of_work() as session:
            session.add(plan)
        return plan

    def _hold(self, plan: Plan) -> Plan:
        """Hold the plan's stock. A refusal (409, 422) fails the plan and is the answer. When the
        inventory cannot be reached or answers too late, the hold may or may not exist: it is
        undone (the same idempotent request finds it, then it is released) and the plan fails;
        if even that cannot be done now, the plan stays `reserving` for `reconcile` to undo."""
        lines = hold_lines(plan.shipments)
        reservation_id, failure = None, None
        if lines:
            try:
                reservation_id = _reserve(self.inventory, plan.id, lines, self.hold_ttl_s)["id"]
            except RemoteError as exc:
                if exc.status >= 500:
                    raise
                failure = exc
            except (Unavailable, UpstreamTimeout) as exc:
                if not _undo_hold(self.inventory, plan.id, lines, self.hold_ttl_s):
                    raise
                failure = exc
        with self.db.unit_of_work() as session:
            plan = _plan(session, plan.id, lock=True)
            if failure is None:
                plan.reservations = [reservation_id] if reservation_id else []
                for shipment in plan.shipments:
                    shipment.reservation_id = reservation_id
                _move(session, plan, lifecycle.HOLD_OK)
            else:
                plan.failure = failure.detail[:400]
                _move(session, plan, lifecycle.HOLD_REFUSED)
        if failure is not None:
            raise failure
        return plan

    # -- after planning --------------------------------------------------------------------
    def get(self, plan_id: int) -> Plan:
        with self.db.reading() as session:
            return _plan(session, plan_id)

    def dispatch(self, identity: Identity, plan_id: int) -> Plan:
        """Commit every hold of the plan: the stock leaves the depots."""
        return self._settle(identity, plan_id, lifecycle.DISPATCH)

    def cancel(self, identity: Identity, plan_id: int) -> Plan:
        """Release every hold of a plan not yet dispatched."""
        return self._settle(identity, plan_id, lifecycle.CANCEL)

    def _settle(self, identity: Identity, plan_id: int, action: str) -> Plan:
        """Dispatch or cancel: each hold committed or released under a key of its own (a retry
        after a failure part-way finishes the rest), then the plan and its shipments move."""
        require(identity, "plans.write")
        plan = self.get(plan_id)
        if lifecycle.already_done(plan.status, action):
            return plan
        lifecycle.next_status(plan.status, action, plan.id)  # refused before anything is done
        verb = lifecycle.SETTLEMENTS[action]
        settle = getattr(self.inventory, verb)  # Inventory.commit or Inventory.release
        for reservation_id in plan.reservations:
            settle(reservation_id, f"plan:{plan.id}:{verb}:{reservation_id}")
        with self.db.unit_of_work() as session:
            plan = _plan(session, plan_id, lock=True)
            _move(session, plan, action)
        return plan

    def replan(self, identity: Identity, plan_id: int) -> Plan:
        """After road events: undelivered shipments get the fastest route of the current graph;
        those whose road is gone are stranded and their quantity is sourced again. Nothing
        delivered moves."""
        require(identity, "plans.write")
        with self.db.reading() as session:
            plan = _plan(session, plan_id)
            graph = roads.ensure_network(session, self.graphs)
            incident = incidents.get(session, plan.incident_id)
            sites, level = list(incident.sites), incident.level
        lifecycle.next_status(plan.status, lifecycle.REPLAN, plan.id)
        nodes = {site["id"]: site for site in sites}
        rerouted, stranded = _reroute(graph, plan.shipments, nodes)
        if lifecycle.releases_stranded_holds(plan.status):  # retry-safe: keyed per shipment
            for shipment in stranded:
                self.inventory.release_part(
                    shipment.reservation_id, f"plan:{plan.id}:strand:{shipment.id}",
                    [{"warehouse": shipment.source, "item": shipment.item,
                      "quantity": shipment.quantity}])
        replacements, unmet, reservation_id = self._resource(plan, stranded, nodes, level,
                                                             sites, graph)
        return self._record_replan(plan_id, graph.version, rerouted, stranded, replacements,
                                   unmet, reservation_id)

    def _resource(self, plan: Plan, stranded: list[Shipment], nodes: dict[str, dict],
                  level: str | None, sites: list[dict],
                  graph: RoadGraph) -> tuple[list[solver.Shipment], list[solver.Unmet], int | None]:
        """New sources for what the stranded shipments carried, held (and, for a dispatched
        plan, committed) under a key of those shipments, so that a retry finds the same hold."""
        if not stranded:
            return [], [], None
        wanted: dict[tuple[str, str], int] = {}
        for shipment in stranded:
            key = (shipment.site, shipment.item)
            wanted[key] = wanted.get(key, 0) + shipment.quantity - shipment.delivered
        demands = [solver.Demand(site=site, node=nodes[site]["node"], item=item,
                                 quantity=quantity, priority=1,
                                 township=nodes[site]["township"], county=nodes[site]["county"])
                   for (site, item), quantity in wanted.items()]
        result = self._solve(graph, sites, demands, _policy(plan.policy, level))
        if not result.shipments:
            return [], result.unmet, None
        tag = hashlib.sha256(",".join(str(s.id) for s in stranded).encode()).hexdigest()[:16]
        held = self.inventory.reserve(
            f"plan:{plan.id}:replan:{tag}",
            [{"warehouse": s.from_, "item": s.item, "quantity": s.quantity}
             for s in result.shipments], self.hold_ttl_s, f"plan:{plan.id}")
        if lifecycle.commits_replacements(plan.status):
            self.inventory.commit(held["id"], f"plan:{plan.id}:commit:{held['id']}")
        return result.shipments, result.unmet, held["id"]

    def _record_replan(self, plan_id: int, version: int, rerouted: dict[int, Route],
                       stranded: list[Shipment], replacements: list[solver.Shipment],
                       unmet: list[solver.Unmet], reservation_id: int | None) -> Plan:
        with self.db.unit_of_work() as session:
            plan = _plan(session, plan_id, lock=True)  # one replan records at a time
            for shipment in plan.shipments:
                route = rerouted.get(shipment.id)
                if route is not None:
                    shipment.minutes, shipment.distance_km = route.minutes, route.distance_km
                    shipment.path = list(route.path)
                    shipment.note = f"rerouted on graph version {version}"
            stranded_ids = {s.id for s in stranded}
            cut = [shipment for shipment in plan.shipments if shipment.id in stranded_ids]
            if not any(shipment.status == lifecycle.STRANDED for shipment in cut):  # not yet
                for shipment in cut:
                    shipment.status = lifecycle.STRANDED
                    shipment.note = f"no open road on graph version {version}; re-sourced"
                for new in replacements:
                    row = shipment_row(new, plan.status)
                    row.reservation_id = reservation_id
                    plan.shipments.append(row)
                if reservation_id:
                    plan.reservations = [*plan.reservations, reservation_id]
                plan.unmet = [*plan.unmet, *(unmet_json(u) for u in unmet)]
            plan.graph_version = version
            plan.cost = sum(s.quantity * s.minutes for s in plan.shipments
                            if lifecycle.counts(s.status))
            _move(session, plan, lifecycle.REPLAN)
        return plan


def reconcile(db: Database, inventory: Inventory, hold_ttl_s: int,
              older_than_s: int = 60) -> int:
    """Settle plans left `reserving` for `older_than_s` (their process died, or the inventory
    could not be reached): their hold, if it was made, is released and they fail; nobody waits
    for them any more. `hold_ttl_s` is the plans' own (the undo repeats their hold request to
    find the hold). Answers how many were settled; the others are tried again next time."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    with db.reading() as session:
        stuck = list(session.scalars(select(Plan).where(Plan.status == lifecycle.RESERVING,
                                                        Plan.updated_at < cutoff)))
    settled = 0
    for plan in stuck:
        lines = hold_lines(plan.shipments)
        if lines and not _undo_hold(inventory, plan.id, lines, hold_ttl_s):
            continue  # the inventory is still out of reach: next time
        with db.unit_of_work() as session:
            plan = _plan(session, plan.id, lock=True)
            if not lifecycle.allowed(plan.status, lifecycle.RECONCILE):
                continue  # settled meanwhile
            plan.failure = "abandoned while holding its stock; undone"
            _move(session, plan, lifecycle.RECONCILE)
        settled += 1
    return settled


def record_deliveries(session: Session, identity: Identity, plan_id: int,
                      data: dict[str, Any]) -> Plan:
    """Arrivals of shipments (a retried request with its Idempotency-Key counts once)."""
    require(identity, "plans.write")
    plan = _plan(session, plan_id)
    lifecycle.next_status(plan.status, lifecycle.DELIVER, plan.id)
    by_id = {shipment.id: shipment for shipment in plan.shipments}
    now = datetime.now(UTC)
    for index, delivery in enumerate(data["deliveries"]):
        shipment = by_id.get(delivery["shipment"])
        if shipment is None:
            raise InvalidInput(f"plan {plan_id} has no shipment {delivery['shipment']}",
                               errors={f"deliveries.{index}.shipment": ["not in this plan"]})
        quantity = delivery.get("quantity", shipment.quantity - shipment.delivered)
        if shipment.delivered + quantity > shipment.quantity:
            raise InvalidInput(f"shipment {shipment.id} carries {shipment.quantity}; "
                               f"{shipment.delivered} already arrived",
                               errors={f"deliveries.{index}.quantity": ["more than shipped"]})
        shipment.delivered += quantity
        shipment.delivered_at = delivery.get("at") or now
        shipment.note = delivery.get("note") or shipment.note
        shipment.status = lifecycle.arrived(shipment.status, shipment.delivered,
                                            shipment.quantity)
    plan.status = lifecycle.after_deliveries(plan.status, [s.status for s in plan.shipments])
    plan.updated_at = now
    session.flush()
    return plan


def _move(session: Session, plan: Plan, action: str) -> None:
    """One step of the plan's life: its status and its shipments' as `lifecycle` says, and the
    step's event, if it has one."""
    after = lifecycle.next_status(plan.status, action, plan.id)
    for shipment in plan.shipments:
        shipment.status = lifecycle.shipment_status(shipment.status, plan.status, after)
    plan.status = after
    plan.updated_at = datetime.now(UTC)
    session.flush()  # new shipments get their ids before the event names them
    event = lifecycle.EVENTS.get(action)
    if event:
        events.record(session, outbox, event, plan_event(plan))


def _plan(session: Session, plan_id: int, lock: bool = False) -> Plan:
    plan = session.get(Plan, plan_id, with_for_update=lock or None)
    if plan is None:
        raise NotFound(f"no allocation plan {plan_id}")
    return plan


def _policy(chosen: dict[str, Any], level: str | None) -> solver.Policy:
    """The solver's policy from a plan request (or the plan's record of it)."""
    return solver.Policy(kind=chosen.get("policy") or NEAREST,
                         max_minutes=chosen.get("max_minutes"),
                         keep_min=bool(chosen.get("keep_min")), incident_level=level)


def _check_on_network(graph: RoadGraph, demands: list[solver.Demand]) -> None:
    for demand in demands:
        try:
            graph.node_index(demand.node)
        except KeyError:
            raise InvalidInput(f"site {demand.site!r} is at road node {demand.node!r}, which "
                               "the current road network does not have",
                               errors={"sites": [f"{demand.site}: unknown road node "
                                                 f"{demand.node!r}"]}) from None


def _reroute(graph: RoadGraph, shipments: list[Shipment],
             nodes: dict[str, dict]) -> tuple[dict[int, Route], list[Shipment]]:
    """The new routes of shipments on the way whose fastest road changed, and the shipments
    no open road reaches any more."""
    rerouted, stranded = {}, []
    for shipment in shipments:
        if not lifecycle.on_the_way(shipment.status):
            continue
        try:
            route = graph.route(shipment.path[0], nodes[shipment.site]["node"])
        except (NoRoute, KeyError):  # no open road, or a node the network no longer has
            stranded.append(shipment)
            continue
        if list(route.path) != list(shipment.path):
            rerouted[shipment.id] = route
    return rerouted, stranded


def _reserve(inventory: Inventory, plan_id: int, lines: list[dict], ttl_s: int) -> dict:
    return inventory.reserve(f"plan:{plan_id}:hold", lines, ttl_s, f"plan:{plan_id}")


def _undo_hold(inventory: Inventory, plan_id: int, lines: list[dict], ttl_s: int) -> bool:
    """Release whatever hold the plan's request made, if any. False if it cannot be done now."""
    try:
        held = _reserve(inventory, plan_id, lines, ttl_s)  # the kept answer, or a new hold
        inventory.release(held["id"], f"plan:{plan_id}:undo:{held['id']}")
    except RemoteError as exc:
        return exc.status < 500  # refused now: nothing was held
    except (Unavailable, UpstreamTimeout):
        return False
    return True


def derived_demands(sites: list[dict], items: list[dict], days: int) -> list[dict]:
    """Demands from population and the items' norms: per person once, per person per day."""
    out = []
    for site in sites:
        people = site.get("population") or 0
        if people <= 0:
            continue
        for item in items:
            need = people * (item.get("per_person") or 0) + \
                people * (item.get("per_person_day") or 0) * days
            if need > 0:
                out.append({"site": site["id"], "item": item["sku"], "quantity": math.ceil(need),
                            "priority": 1 if item.get("per_person_day") else 2})
    return out


def depots(network: Network, sites: list[dict], graph: RoadGraph,
           items: list[str]) -> solver.DepotTable:
    """The solver's depot table, straight from the inventory's columns (no object per depot)."""
    w, s = network.warehouses, network.stock
    affected = {site["township"] for site in sites if site.get("township")}
    paths = [[p for p in path.split("/") if p] for path in w["path"]]
    townships = np.array([p[2] if len(p) > 2 else None for p in paths], dtype=object)
    column = {sku: i for i, sku in enumerate(items)}
    available = np.zeros((len(w["code"]), len(items)), dtype=np.int64, order="F")
    minimum = np.zeros_like(available)
    if s["warehouse"]:
        rows = np.asarray(s["warehouse"], dtype=np.int64)
        cols = np.array([column.get(sku, -1) for sku in s["item"]], dtype=np.int64)
        keep = cols >= 0
        available[rows[keep], cols[keep]] = np.maximum(np.asarray(s["available"])[keep], 0)
        minimum[rows[keep], cols[keep]] = np.asarray(s["min"])[keep]
    return solver.DepotTable(
        codes=list(w["code"]), node=graph.node_indexes(w["road_node"]),
        active=np.array([status == ACTIVE for status in w["status"]], dtype=bool),
        in_incident=np.array([t in affected for t in townships.tolist()], dtype=bool),
        township=townships,
        county=np.array([p[1] if len(p) > 1 else None for p in paths], dtype=object),
        items=list(items), available=available, minimum=minimum)


def hold_lines(shipments: list[Shipment]) -> list[dict]:
    merged: dict[tuple[str, str], int] = {}
    for shipment in shipments:
        key = (shipment.source, shipment.item)
        merged[key] = merged.get(key, 0) + shipment.quantity
    return [{"warehouse": w, "item": i, "quantity": q} for (w, i), q in sorted(merged.items())]


def shipment_row(shipment: solver.Shipment, status: str) -> Shipment:
    return Shipment(source=shipment.from_, site=shipment.to, item=shipment.item,
                    quantity=shipment.quantity, minutes=shipment.minutes,
                    distance_km=shipment.distance_km, path=list(shipment.path),
                    reason=shipment.reason[:600], status=status, delivered=0)


def demand_json(demand: solver.Demand) -> dict:
    return {"site": demand.site, "item": demand.item, "quantity": demand.quantity,
            "priority": demand.priority}


def unmet_json(unmet: solver.Unmet) -> dict:
    return {"site": unmet.site, "item": unmet.item, "quantity": unmet.quantity,
            "reason": unmet.reason, "detail": unmet.detail}


def plan_event(plan: Plan) -> dict:
    return {"id": plan.id, "incident": plan.incident_id, "status": plan.status,
            "graph_version": plan.graph_version, "cost": plan.cost,
            "shipments": [{"id": s.id, "from": s.source, "to": s.site, "item": s.item,
                           "quantity": s.quantity} for s in plan.shipments],
            "unmet": plan.unmet}

