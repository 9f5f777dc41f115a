"""The life of an allocation plan: solved, held in the inventory, dispatched or cancelled,
delivered, re-planned after road events.

No transaction is held open across a call to the inventory service. A plan is first written as
`reserving`, then held (one all-or-none reservation, idempotent by the plan id), then marked
`planned`; a plan left `reserving` by a process that died is reconciled by `reconcile`, and its
unconfirmed hold expires by itself in any case.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select

from allocation_svc import incidents, roads, solver
from allocation_svc.inventory import Inventory, Network
from allocation_svc.models import Plan, Shipment, outbox
from allocation_svc.roadgraph import NoRoute, RoadGraph
from shared import events
from shared.auth import Identity
from shared.client import RemoteError
from shared.db import Database
from shared.errors import Conflict, InvalidInput, NotFound, Unavailable, UpstreamTimeout

ROLES = ("admin", "commander", "integration")
RESERVING, PLANNED, DISPATCHED, CANCELLED, FAILED, DELIVERED = (
    "reserving", "planned", "dispatched", "cancelled", "failed", "delivered")


@dataclass
class Allocation:
    """What plans need: their database, the inventory, and the graph of this process."""

    db: Database
    inventory: Inventory
    graphs: roads.GraphCache
    hold_ttl_s: int = 3600

    # -- making a plan ---------------------------------------------------------------------
    def create(self, identity: Identity, incident_id: int, data: dict[str, Any],
               key: str | None = None, fingerprint: str | None = None) -> Plan:
        identity.require(*ROLES)
        self.reconcile()
        if key:
            existing = self._by_key(key, fingerprint)
            if existing is not None:  # a retry: finish what the first attempt left half-made
                return self._hold(existing) if existing.status == RESERVING else existing
        with self.db.reading() as session:
            incident = incidents.get(session, incident_id)
            graph = roads.ensure_network(session, self.graphs)
            sites = list(incident.sites)
            level = incident.level
        demands = self._demands(sites, data)
        for demand in demands:
            try:
                graph.node_index(demand.node)
            except KeyError:
                raise InvalidInput(f"site {demand.site!r} is at road node {demand.node!r}, which "
                                   "the current road network does not have",
                                   errors={"sites": [f"{demand.site}: unknown road node "
                                                     f"{demand.node!r}"]}) from None
        network = self.inventory.network(sorted({d.item for d in demands}))
        policy = solver.Policy(kind=data.get("policy", "nearest"),
                               max_minutes=data.get("max_minutes"),
                               keep_min=data.get("keep_min", False), incident_level=level)
        items = sorted({d.item for d in demands})
        result = solver.solve(graph, depots(network, sites, graph, items), demands, policy)
        plan = self._record(identity, incident_id, graph.version, data, demands, result, key,
                            fingerprint)
        if isinstance(plan, Plan) and plan.status != RESERVING:
            return plan  # a concurrent retry with the same key made it first
        return self._hold(plan)

    def _by_key(self, key: str, fingerprint: str | None) -> Plan | None:
        with self.db.reading() as session:
            plan = session.scalar(select(Plan).where(Plan.request_key == key))
        if plan is not None and plan.request_fingerprint != fingerprint:
            raise InvalidInput("this Idempotency-Key was already used with another request body",
                               errors={"Idempotency-Key": ["already used with another request"]})
        return plan

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

    def _record(self, identity, incident_id, version, data, demands, result, key,
                fingerprint) -> Plan:
        now = datetime.now(UTC)
        plan = Plan(incident_id=incident_id, status=RESERVING, graph_version=version,
                    policy={k: data.get(k) for k in ("policy", "max_minutes", "keep_min")},
                    demands=[demand_json(d) for d in demands],
                    unmet=[unmet_json(u) for u in result.unmet], cost=result.cost,
                    reservations=[], request_key=key, request_fingerprint=fingerprint,
                    created_by=identity.actor, created_at=now, updated_at=now)
        plan.shipments = [shipment_row(s, RESERVING) for s in result.shipments]
        from sqlalchemy.exc import IntegrityError

        try:
            with self.db.unit_of_work() as session:
                session.add(plan)
        except IntegrityError:
            existing = self._by_key(key, fingerprint) if key else None
            if existing is None:
                raise
            return existing
        return plan

    def _hold(self, plan: Plan) -> Plan:
        """Hold the plan's stock. A refusal (409, 422) fails the plan. When the inventory cannot
        be reached or answers too late, the hold may or may not exist: it is undone (the same
        idempotent request finds it, then it is released) and the plan fails; if even that
        cannot be done now, the plan stays `reserving` for `reconcile` to undo."""
        lines = hold_lines(plan.shipments)
        reservation_id, failure = None, None
        if lines:
            try:
                reservation_id = self._reserve(plan, lines)["id"]
            except RemoteError as exc:
                if exc.status >= 500:
                    raise
                failure = exc
            except (Unavailable, UpstreamTimeout) as exc:
                if not self._undo_hold(plan, lines):
                    raise
                failure = exc
        with self.db.unit_of_work() as session:
            plan = session.get(Plan, plan.id)
            if failure is None:
                plan.status = PLANNED
                plan.reservations = [reservation_id] if reservation_id else []
                for shipment in plan.shipments:
                    shipment.status, shipment.reservation_id = PLANNED, reservation_id
                events.record(session, outbox, "allocation.planned", plan_event(plan))
            else:
                plan.status, plan.failure = FAILED, failure.detail[:400]
                for shipment in plan.shipments:
                    shipment.status = FAILED
            plan.updated_at = datetime.now(UTC)
        if failure is not None:
            raise failure
        return plan

    def _reserve(self, plan: Plan, lines: list[dict]) -> dict:
        return self.inventory.reserve(f"plan:{plan.id}:hold", lines, self.hold_ttl_s,
                                      f"plan:{plan.id}")

    def _undo_hold(self, plan: Plan, lines: list[dict]) -> bool:
        """Release whatever hold the plan's request made, if any. False if it cannot be done."""
        try:
            held = self._reserve(plan, lines)  # the stored answer if it was made (or a new one)
            self.inventory.release(held["id"], f"plan:{plan.id}:undo:{held['id']}")
        except RemoteError as exc:
            return exc.status < 500  # refused now: nothing was held
        except (Unavailable, UpstreamTimeout):
            return False
        return True

    def route(self, origin: str, destination: str) -> dict[str, Any]:
        with self.db.reading() as session:
            graph = roads.ensure_network(session, self.graphs)
        start, end = self._node(graph, origin, "from"), self._node(graph, destination, "to")
        try:
            route = graph.route(start, end)
        except NoRoute as exc:
            raise InvalidInput(f"no open road joins {origin} and {destination}: {exc}",
                               errors={"to": ["no open road from 'from'"]}) from None
        return {"graph_version": graph.version, "minutes": route.minutes,
                "distance_km": route.distance_km, "path": list(route.path),
                "geometry": {"type": "LineString", "coordinates": route.coordinates}}

    def _node(self, graph: RoadGraph, name: str, field: str) -> str:
        """A road node id as it is, or the road node of the warehouse with that code."""
        with contextlib.suppress(KeyError):
            graph.node_index(name)
            return name
        try:
            node = self.inventory.warehouse(name).get("road_node")
        except RemoteError as exc:
            if exc.status != 404:
                raise
            node = None
        if not node:
            raise InvalidInput(f"{name!r} is neither a road node nor a warehouse with one",
                               errors={field: ["unknown road node or warehouse code"]})
        return node

    # -- after planning --------------------------------------------------------------------
    def get(self, plan_id: int) -> Plan:
        with self.db.reading() as session:
            return _plan(session, plan_id)

    def dispatch(self, identity: Identity, plan_id: int) -> Plan:
        """Commit every hold of the plan: the stock leaves the depots."""
        identity.require(*ROLES)
        plan = self.get(plan_id)
        if plan.status in (DISPATCHED, DELIVERED):
            return plan
        if plan.status != PLANNED:
            raise Conflict(f"plan {plan_id} is {plan.status}; only a planned plan is dispatched")
        for reservation_id in plan.reservations:
            self.inventory.commit(reservation_id, f"plan:{plan.id}:commit:{reservation_id}")
        return self._transition(plan_id, DISPATCHED, "allocation.dispatched")

    def cancel(self, identity: Identity, plan_id: int) -> Plan:
        identity.require(*ROLES)
        plan = self.get(plan_id)
        if plan.status in (CANCELLED, FAILED):
            return plan
        if plan.status != PLANNED:
            raise Conflict(f"plan {plan_id} is {plan.status}; its stock has left the depots")
        for reservation_id in plan.reservations:
            self.inventory.release(reservation_id, f"plan:{plan.id}:release:{reservation_id}")
        return self._transition(plan_id, CANCELLED, "allocation.cancelled")

    def _transition(self, plan_id: int, status: str, event: str) -> Plan:
        with self.db.unit_of_work() as session:
            plan = _plan(session, plan_id)
            plan.status = status
            for shipment in plan.shipments:
                if shipment.status == PLANNED:
                    shipment.status = status
            plan.updated_at = datetime.now(UTC)
            events.record(session, outbox, event, plan_event(plan))
        return plan

    def replan(self, identity: Identity, plan_id: int) -> Plan:
        """After road events: undelivered shipments get the fastest route of the current graph;
        those whose road is gone are stranded and their quantity is sourced again. Nothing
        delivered moves."""
        identity.require(*ROLES)
        with self.db.reading() as session:
            plan = _plan(session, plan_id)
            graph = roads.ensure_network(session, self.graphs)
            incident = incidents.get(session, plan.incident_id)
            sites, level = list(incident.sites), incident.level
        if plan.status not in (PLANNED, DISPATCHED):
            raise Conflict(f"plan {plan_id} is {plan.status}; only planned or dispatched plans "
                           "are re-planned")
        nodes = {site["id"]: site for site in sites}
        rerouted, stranded = {}, []
        for shipment in plan.shipments:
            if shipment.status not in (PLANNED, DISPATCHED):
                continue
            try:
                route = graph.route(shipment.path[0], nodes[shipment.site]["node"])
            except (NoRoute, KeyError):  # no open road, or a node the network no longer has
                stranded.append(shipment)
                continue
            if list(route.path) != list(shipment.path):
                rerouted[shipment.id] = route
        if plan.status == PLANNED:  # first free what the cut-off shipments held (retry-safe)
            for shipment in stranded:
                self.inventory.release_part(
                    shipment.reservation_id, f"plan:{plan.id}:strand:{shipment.id}",
                    [{"warehouse": shipment.source, "item": shipment.item,
                      "quantity": shipment.quantity}])
        replacements, unmet, reservation_id = self._resource(plan, stranded, nodes, level,
                                                             sites, graph)
        return self._record_replan(plan_id, graph.version, rerouted, stranded, replacements,
                                   unmet, reservation_id)

    def _resource(self, plan: Plan, stranded: list[Shipment], nodes: dict, level, sites,
                  graph: RoadGraph) -> tuple[list, list, int | None]:
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
        items = sorted({d.item for d in demands})
        network = self.inventory.network(items)
        policy = solver.Policy(kind=plan.policy.get("policy") or "nearest",
                               max_minutes=plan.policy.get("max_minutes"),
                               keep_min=bool(plan.policy.get("keep_min")), incident_level=level)
        result = solver.solve(graph, depots(network, sites, graph, items), demands, policy)
        if not result.shipments:
            return [], result.unmet, None
        tag = hashlib.sha256(",".join(str(s.id) for s in stranded).encode()).hexdigest()[:16]
        held = self.inventory.reserve(
            f"plan:{plan.id}:replan:{tag}",
            [{"warehouse": s.from_, "item": s.item, "quantity": s.quantity}
             for s in result.shipments], self.hold_ttl_s, f"plan:{plan.id}")
        if plan.status == DISPATCHED:
            self.inventory.commit(held["id"], f"plan:{plan.id}:commit:{held['id']}")
        return result.shipments, result.unmet, held["id"]

    def _record_replan(self, plan_id, version, rerouted, stranded, replacements, unmet,
                       reservation_id) -> Plan:
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
            if not any(shipment.status == "stranded" for shipment in cut):  # not recorded yet
                for shipment in cut:
                    shipment.status = "stranded"
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
                            if s.status != "stranded")
            plan.updated_at = datetime.now(UTC)
            events.record(session, outbox, "allocation.planned", plan_event(plan))
        return plan

    def reconcile(self, older_than_s: int = 60) -> int:
        """Settle plans left `reserving` (their process died, or the inventory could not be
        reached): their hold, if it was made, is released and they fail. Nobody is waiting for
        them any more; a retry with the request's Idempotency-Key before this finishes them."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        with self.db.reading() as session:
            stuck = list(session.scalars(select(Plan).where(Plan.status == RESERVING,
                                                            Plan.updated_at < cutoff)))
        settled = 0
        for plan in stuck:
            lines = hold_lines(plan.shipments)
            if lines and not self._undo_hold(plan, lines):
                continue  # the inventory is still out of reach: next time
            with self.db.unit_of_work() as session:
                plan = session.get(Plan, plan.id)
                if plan.status != RESERVING:
                    continue
                plan.status, plan.failure = FAILED, "abandoned while holding its stock; undone"
                for shipment in plan.shipments:
                    shipment.status = FAILED
                plan.updated_at = datetime.now(UTC)
            settled += 1
        return settled


def record_deliveries(session, identity: Identity, plan_id: int, data: dict[str, Any]) -> Plan:
    """Arrivals of shipments (a retried request with its Idempotency-Key counts once)."""
    identity.require(*ROLES)
    plan = _plan(session, plan_id)
    if plan.status not in (DISPATCHED, DELIVERED):
        raise Conflict(f"plan {plan_id} is {plan.status}; only dispatched shipments arrive")
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
        if shipment.delivered == shipment.quantity:
            shipment.status = DELIVERED
    if all(s.status == DELIVERED for s in plan.shipments if s.status != "stranded"):
        plan.status = DELIVERED
    plan.updated_at = now
    session.flush()
    return plan


def _plan(session, plan_id: int, lock: bool = False) -> Plan:
    plan = session.get(Plan, plan_id, with_for_update=lock or None)
    if plan is None:
        raise NotFound(f"no allocation plan {plan_id}")
    return plan


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
        active=np.array([status == "active" for status in w["status"]], dtype=bool),
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

