"""The plan service: a plan solved, recorded, held in the inventory, dispatched or cancelled,
delivered, re-planned after road events, each step as `lifecycle` decides.

No transaction is held open across a call to the inventory service. A plan is first written as
`reserving`, then held (one all-or-none reservation, idempotent by the plan id), then marked
`planned`. A plan left `reserving` by a process that died is settled by `reconcile` (run by the
background worker when it starts and every few seconds; a new plan never waits for it), and its
unconfirmed hold expires by itself in any case. The request's Idempotency-Key is claimed in
the record's transaction and answered in the one that marks the plan held (`shared.answers`);
the web layer (`shared.web.run_command`) keeps whatever the plan did not.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session

from allocation_svc import incidents, lifecycle, roads, solver, trips
from allocation_svc.inventory import Inventory, Network
from allocation_svc.models import Plan, Shipment, outbox
from allocation_svc.permissions import require, require_sites
from allocation_svc.roadgraph import NoRoute, RoadGraph, Route
from allocation_svc.vocabulary import ACTIVE, BACKBONE
from shared import events, i18n
from shared.answers import KeptAnswer
from shared.auth import Identity
from shared.client import RemoteError
from shared.db import Database
from shared.errors import Conflict, InvalidInput, NotFound, Unavailable, UpstreamTimeout
from shared.i18n import _
from shared.sql import insert_rows

log = logging.getLogger(__name__)

PLANS, SHIPMENTS = Plan.__table__, Shipment.__table__
# What a plan records of its request, to solve its re-plans alike.
POLICY_FIELDS = ("policy", "max_minutes", "keep_min", "outside_villages", "trip_cost")


@dataclass
class Allocation:
    """What plans need: their database, the inventory, the graphs of this process, how long
    a plan's hold lives before it frees itself, and the vehicles that drive plans."""

    db: Database
    inventory: Inventory
    graphs: roads.GraphCache
    hold_ttl_s: int
    driving: trips.Driving = field(default_factory=trips.Driving)

    def warm(self, tries: int = 30, pause_s: float = 2.0) -> bool:
        """Load the road graph and read the whole network before the first plan asks: a
        nation's take 20-50 s, longer than the gateway waits for a plan. The inventory may be
        starting beside this service, so its read is tried again meanwhile. True when the
        network was read."""
        started = time.monotonic()
        with self.db.reading() as session:
            try:
                graph = self.graphs.current(session)
            except NotFound:
                graph = None  # no road network imported yet: the stock alone
        loaded = time.monotonic()
        for attempt in range(tries):
            try:
                network = self.inventory.network()
            except (Unavailable, UpstreamTimeout, RemoteError) as exc:
                log.info("warm start: the inventory did not answer (%s), try %d of %d",
                         exc, attempt + 1, tries)
                time.sleep(pause_s)
                continue
            network.places()
            if graph is not None:
                network.nodes(graph)
            log.info("warm start: ready in %.1f s (%s in %.1f s; %d warehouses and %d "
                     "balances in %.1f s)", time.monotonic() - started,
                     f"road graph {graph.version}" if graph is not None else "no road network yet",
                     loaded - started, len(network.warehouses["code"]), len(network.stock),
                     time.monotonic() - loaded)
            return True
        log.warning("warm start: gave up after %d tries; the first plan reads everything", tries)
        return False

    # -- making a plan ---------------------------------------------------------------------
    def create(self, identity: Identity, incident_id: int, data: dict[str, Any],
               kept: KeptAnswer | None = None) -> Plan:
        """Solve, record the plan as `reserving`, hold its stock: `planned`, or the refusal.
        The request's key (`kept`) is claimed with the record and answered with the hold."""
        require(identity, "plans.write")
        with self.db.reading() as session:
            incident = incidents.get(session, incident_id)
            require_sites(identity, incident.sites)
            graph = roads.ensure_network(session, self.graphs)
            sites, level, drill = list(incident.sites), incident.level, incident.drill
            kind = incident.type
        network = self.inventory.network()  # first: the catalogue's number comes with it
        demands = self._demands(sites, data, kind)
        _check_on_network(graph, demands)
        policy = self._policy(data, level)
        plan = self._record(identity, incident_id, graph.version, data, demands,
                            self._solve(graph, network, sites, demands, policy), drill, kept)
        try:
            return self._hold(plan, kept)
        except RemoteError as exc:
            if exc.status != 409:
                raise
        # The stock moved between the network's read and the hold (another plan, a keeper):
        # the refused plan stays on record as failed, and the network as it is now is solved
        # once more. A second refusal is the answer.
        network = self.inventory.network()
        return self._hold(self._record(identity, incident_id, graph.version, data, demands,
                                       self._solve(graph, network, sites, demands, policy),
                                       drill, kept), kept)

    def _demands(self, sites: list[dict], data: dict[str, Any],
                 kind: str) -> list[solver.Demand]:
        by_id = {site["id"]: site for site in sites}
        wanted: list[dict] = []
        for index, demand in enumerate(data.get("demands") or []):
            if demand["site"] not in by_id:
                raise InvalidInput(_("demand %(index)s names site %(site)r, which is not a "
                                     "site of this incident", index=index,
                                     site=demand["site"]),
                                   errors={f"demands.{index}.site": [_("not a site of the "
                                                                       "incident")]})
            wanted.append(demand)
        catalogue = self.inventory.items()
        if data.get("population_days"):
            wanted.extend(derived_demands(sites, catalogue, data["population_days"], kind))
        if not wanted:
            raise InvalidInput(_("nothing to plan: give demands, or population_days with sites "
                                 "that have a population"),
                               errors={"demands": [_("give demands or population_days")]})
        merged: dict[tuple[str, str, int], int] = {}
        for demand in wanted:
            slot = (demand["site"], demand["item"], demand.get("priority", 2))
            merged[slot] = merged.get(slot, 0) + demand["quantity"]
        weight = unit_weights(catalogue)
        return [solver.Demand(site=site, node=by_id[site]["node"], item=item, quantity=quantity,
                              priority=priority, township=by_id[site]["township"],
                              county=by_id[site]["county"], unit_weight_kg=weight.get(item, 0.0))
                for (site, item, priority), quantity in merged.items()]

    def _policy(self, chosen: dict[str, Any], level: str | None) -> solver.Policy:
        """The solver's policy from a plan request (or the plan's record of it)."""
        kind = chosen.get("policy") or BACKBONE
        keep_min = chosen.get("keep_min")
        trip_cost = chosen.get("trip_cost")
        driving = self.driving if trip_cost is None else \
            replace(self.driving, trip_cost=float(trip_cost))
        return solver.Policy(kind=kind, max_minutes=chosen.get("max_minutes"),
                             keep_min=kind == BACKBONE if keep_min is None else bool(keep_min),
                             incident_level=level,
                             outside_villages=bool(chosen.get("outside_villages")),
                             driving=driving)

    @staticmethod
    def _solve(graph: RoadGraph, network: Network, sites: list[dict],
               demands: list[solver.Demand], policy: solver.Policy) -> solver.Plan:
        items = sorted({d.item for d in demands})
        return solver.solve(graph, depots(network, sites, graph, items), demands, policy)

    def _record(self, identity: Identity, incident_id: int, version: int, data: dict[str, Any],
                demands: list[solver.Demand], result: solver.Plan, drill: bool,
                kept: KeptAnswer | None = None) -> Plan:
        now = datetime.now(UTC)
        plan = Plan(incident_id=incident_id, status=lifecycle.RESERVING, graph_version=version,
                    policy={k: data.get(k) for k in POLICY_FIELDS},
                    demands=[demand_json(d) for d in demands],
                    unmet=[unmet_json(u) for u in result.unmet], cost=result.cost,
                    trips=[trip_json(t) for t in result.trips], objective=result.objective,
                    bound=result.bound, gap=result.gap, drill=drill,
                    reservations=[], created_by=identity.actor, created_at=now, updated_at=now)
        plan.shipments = [shipment_row(s, lifecycle.RESERVING) for s in result.shipments]
        with self.db.unit_of_work() as session:
            _claim(session, kept)
            _insert(session, plan)
        return plan

    def _hold(self, plan: Plan, kept: KeptAnswer | None = None) -> Plan:
        """Hold the plan's stock. A refusal (409, 422) fails the plan and is the answer. When the
        inventory cannot be reached or answers too late, the hold may or may not exist: it is
        undone (the same idempotent request finds it, then it is released) and the plan fails;
        if even that cannot be done now, the plan stays `reserving` for `reconcile` to undo.
        A drill's plan holds nothing."""
        lines = [] if plan.drill else hold_lines(plan.shipments)
        reservation_id, expires_at, failure = None, None, None
        if lines:
            try:
                held = _reserve(self.inventory, plan.id, lines, self.hold_ttl_s)
                reservation_id, expires_at = held["id"], _expiry(held, self.hold_ttl_s)
            except RemoteError as exc:
                if exc.status >= 500:
                    raise
                failure = exc
            except (Unavailable, UpstreamTimeout) as exc:
                if not _undo_hold(self.inventory, plan.id, lines, self.hold_ttl_s):
                    raise
                failure = exc
        with self.db.unit_of_work() as session:
            if failure is None and _held(session, plan, reservation_id, expires_at):
                _answer(session, kept, plan)
                return plan
            plan = _plan(session, plan.id, lock=True)
            if failure is None:
                plan.reservations = [reservation_id] if reservation_id else []
                plan.hold_expires_at = expires_at
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

    def _in_scope(self, identity: Identity, plan_id: int) -> Plan:
        """The plan, if its incident lies in the identity's scope (a county commander's)."""
        with self.db.reading() as session:
            plan = _plan(session, plan_id)
            require_sites(identity, incidents.get(session, plan.incident_id).sites)
            return plan

    def dispatch(self, identity: Identity, plan_id: int,
                 kept: KeptAnswer | None = None) -> Plan:
        """Commit every hold of the plan: the stock leaves the depots."""
        return self._settle(identity, plan_id, lifecycle.DISPATCH, kept)

    def cancel(self, identity: Identity, plan_id: int, kept: KeptAnswer | None = None) -> Plan:
        """Release every hold of a plan not yet dispatched."""
        return self._settle(identity, plan_id, lifecycle.CANCEL, kept)

    def _settle(self, identity: Identity, plan_id: int, action: str,
                kept: KeptAnswer | None = None) -> Plan:
        """Dispatch or cancel: each hold committed or released under a key of its own (a retry
        after a failure part-way finishes the rest), then the plan and its shipments move. A
        hold that ran out is not dispatched: the plan lapses, and the answer says how to hold
        it again; cancelling a lapsed plan (or a drill's) has nothing to release. The
        request's key (`kept`) is claimed and answered with the move: a copy sent meanwhile
        only repeats the keyed calls to the inventory, which count once."""
        require(identity, "plans.write")
        plan = self._in_scope(identity, plan_id)
        if lifecycle.already_done(plan.status, action):
            return plan
        if plan.status == lifecycle.LAPSED and action == lifecycle.DISPATCH:
            raise _lapsed(plan)
        lifecycle.next_status(plan.status, action, plan.id)  # refused before anything is done
        if lifecycle.settles_holds(plan.status) and not plan.drill:
            verb = lifecycle.SETTLEMENTS[action]
            settle = getattr(self.inventory, verb)  # Inventory.commit or Inventory.release
            for reservation_id in plan.reservations:
                try:
                    settle(reservation_id, f"plan:{plan.id}:{verb}:{reservation_id}")
                except RemoteError as exc:
                    if not _ran_out(exc):
                        raise
                    if action == lifecycle.DISPATCH:
                        raise _lapsed(self._lapse(plan.id)) from None
        with self.db.unit_of_work() as session:
            _claim(session, kept)
            if not _moved(session, plan, action):
                plan = _plan(session, plan_id, lock=True)
                _move(session, plan, action)
            _answer(session, kept, plan)
        return plan

    def hold_again(self, identity: Identity, plan_id: int,
                   kept: KeptAnswer | None = None) -> Plan:
        """Hold a lapsed plan's stock anew (one hold for all it still carries, keyed by the
        holds that lapsed, so a retry finds it): `planned` again, or the inventory's refusal
        (someone took the stock meanwhile) with the plan still `lapsed`. The request's key
        (`kept`) is claimed and answered in the one write, as a dispatch's is."""
        require(identity, "plans.write")
        plan = self._in_scope(identity, plan_id)
        if lifecycle.already_done(plan.status, lifecycle.HOLD_AGAIN):
            return plan
        lifecycle.next_status(plan.status, lifecycle.HOLD_AGAIN, plan.id)
        live = [s for s in plan.shipments if lifecycle.counts(s.status)]
        key = f"plan:{plan.id}:hold-again:{'-'.join(map(str, plan.reservations)) or 'none'}"
        held = self.inventory.reserve(key, hold_lines(live), self.hold_ttl_s, f"plan:{plan.id}")
        with self.db.unit_of_work() as session:
            _claim(session, kept)
            plan = _plan(session, plan_id, lock=True)
            if plan.status == lifecycle.LAPSED:  # else held again by a retry meanwhile
                plan.reservations = [held["id"]]
                plan.hold_expires_at = _expiry(held, self.hold_ttl_s)
                for shipment in plan.shipments:
                    if lifecycle.counts(shipment.status):
                        shipment.reservation_id = held["id"]
                _move(session, plan, lifecycle.HOLD_AGAIN)
            _answer(session, kept, plan)
        return plan

    def _lapse(self, plan_id: int) -> Plan:
        with self.db.unit_of_work() as session:
            plan = _plan(session, plan_id, lock=True)
            if plan.status == lifecycle.PLANNED:
                _move(session, plan, lifecycle.LAPSE)
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
            require_sites(identity, incident.sites)
            sites, level = list(incident.sites), incident.level
        lifecycle.next_status(plan.status, lifecycle.REPLAN, plan.id)
        nodes = {site["id"]: site for site in sites}
        rerouted, stranded = _reroute(graph, plan.shipments, nodes)
        if lifecycle.releases_stranded_holds(plan.status) and not plan.drill:  # keyed per shipment
            for shipment in stranded:
                self.inventory.release_part(
                    shipment.reservation_id, f"plan:{plan.id}:strand:{shipment.id}",
                    [{"warehouse": shipment.source, "item": shipment.item,
                      "quantity": shipment.quantity}])
        weight = unit_weights(self.inventory.items())
        replacement, reservation_id = self._resource(plan, stranded, nodes, level, sites, graph,
                                                     weight)
        return self._record_replan(plan_id, graph.version, rerouted, stranded, replacement,
                                   reservation_id, weight)

    def _repack(self, plan: Plan, replacement: solver.Plan | None,
                weight: dict[str, float]) -> None:
        """The trips of what the plan still carries, after a re-plan moved its shipments: each
        source keeps its vehicle; the objective counts them, and there is no bound any more
        (the re-plan re-sources what was stranded, it does not re-optimise the whole)."""
        vehicles = {t.from_: trips.Vehicle(t.vehicle, t.capacity_kg)
                    for t in (replacement.trips if replacement else [])}
        vehicles.update({t["from"]: trips.Vehicle(t["vehicle"], t["capacity_kg"])
                         for t in plan.trips or []})
        live = [trips.Load(s.source, s.site, s.item, s.quantity, s.minutes, s.distance_km,
                           s.path) for s in plan.shipments if lifecycle.counts(s.status)]
        packed = trips.pack(live, lambda code: vehicles.get(code) or self.driving.vehicle(None),
                            weight)
        plan.trips = [trip_json(t) for t in packed]
        trip_cost = (plan.policy or {}).get("trip_cost")
        trip_cost = self.driving.trip_cost if trip_cost is None else float(trip_cost)
        plan.objective = plan.cost + trip_cost * len(packed)
        plan.bound = plan.gap = None

    def _resource(self, plan: Plan, stranded: list[Shipment], nodes: dict[str, dict],
                  level: str | None, sites: list[dict], graph: RoadGraph,
                  weight: dict[str, float]) -> tuple[solver.Plan | None, int | None]:
        """New sources for what the stranded shipments carried, held (and, for a dispatched
        plan, committed) under a key of those shipments, so that a retry finds the same hold."""
        if not stranded:
            return None, None
        wanted: dict[tuple[str, str], int] = {}
        for shipment in stranded:
            key = (shipment.site, shipment.item)
            wanted[key] = wanted.get(key, 0) + shipment.quantity - shipment.delivered
        demands = [solver.Demand(site=site, node=nodes[site]["node"], item=item,
                                 quantity=quantity, priority=1,
                                 township=nodes[site]["township"], county=nodes[site]["county"],
                                 unit_weight_kg=weight.get(item, 0.0))
                   for (site, item), quantity in wanted.items()]
        result = self._solve(graph, self.inventory.network(), sites, demands,
                             self._policy(plan.policy, level))
        if not result.shipments or plan.drill:  # a drill holds nothing
            return result, None
        tag = hashlib.sha256(",".join(str(s.id) for s in stranded).encode()).hexdigest()[:16]
        held = self.inventory.reserve(
            f"plan:{plan.id}:replan:{tag}",
            [{"warehouse": s.from_, "item": s.item, "quantity": s.quantity}
             for s in result.shipments], self.hold_ttl_s, f"plan:{plan.id}")
        if lifecycle.commits_replacements(plan.status):
            self.inventory.commit(held["id"], f"plan:{plan.id}:commit:{held['id']}")
        return result, held["id"]

    def _record_replan(self, plan_id: int, version: int, rerouted: dict[int, Route],
                       stranded: list[Shipment], replacement: solver.Plan | None,
                       reservation_id: int | None, weight: dict[str, float]) -> Plan:
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
                for new in replacement.shipments if replacement else []:
                    row = shipment_row(new, plan.status)
                    row.reservation_id = reservation_id
                    plan.shipments.append(row)
                if reservation_id:
                    plan.reservations = [*plan.reservations, reservation_id]
                plan.unmet = [*plan.unmet,
                              *(unmet_json(u) for u in (replacement.unmet if replacement else []))]
            plan.graph_version = version
            plan.cost = sum(s.quantity * s.minutes for s in plan.shipments
                            if lifecycle.counts(s.status))
            self._repack(plan, replacement, weight)
            _move(session, plan, lifecycle.REPLAN)
        return plan


def lapse_due(db: Database, now: datetime | None = None, grace_s: float = 2.0) -> int:
    """Plans still `planned` after their hold ran out become `lapsed`, with their event (a
    background chore): the inventory let the stock go at `hold_expires_at`, so the plan says
    so instead of reading `planned` and failing at dispatch. Answers how many lapsed."""
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=grace_s)
    with db.reading() as session:
        due = list(session.scalars(select(Plan.id).where(Plan.status == lifecycle.PLANNED,
                                                          Plan.hold_expires_at < cutoff)))
    for plan_id in due:
        with db.unit_of_work() as session:
            plan = _plan(session, plan_id, lock=True)
            if plan.status == lifecycle.PLANNED:  # not dispatched meanwhile
                _move(session, plan, lifecycle.LAPSE)
    return len(due)


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
    require_sites(identity, incidents.get(session, plan.incident_id).sites)
    lifecycle.next_status(plan.status, lifecycle.DELIVER, plan.id)
    by_id = {shipment.id: shipment for shipment in plan.shipments}
    now = datetime.now(UTC)
    for index, delivery in enumerate(data["deliveries"]):
        shipment = by_id.get(delivery["shipment"])
        if shipment is None:
            raise InvalidInput(_("plan %(plan)s has no shipment %(shipment)s", plan=plan_id,
                                 shipment=delivery["shipment"]),
                               errors={f"deliveries.{index}.shipment": [_("not in this plan")]})
        quantity = delivery.get("quantity", shipment.quantity - shipment.delivered)
        if shipment.delivered + quantity > shipment.quantity:
            raise InvalidInput(_("shipment %(shipment)s carries %(quantity)s; %(arrived)s "
                                 "already arrived", shipment=shipment.id,
                                 quantity=shipment.quantity, arrived=shipment.delivered),
                               errors={f"deliveries.{index}.quantity": [_("more than shipped")]})
        shipment.delivered += quantity
        shipment.delivered_at = delivery.get("at") or now
        shipment.note = delivery.get("note") or shipment.note
        shipment.status = lifecycle.arrived(shipment.status, shipment.delivered,
                                            shipment.quantity)
    plan.status = lifecycle.after_deliveries(plan.status, [s.status for s in plan.shipments])
    plan.updated_at = now
    session.flush()
    events.record(session, outbox, "allocation.delivered", {
        **plan_event(plan), "arrived": [{"shipment": d["shipment"],
                                         "quantity": by_id[d["shipment"]].delivered}
                                        for d in data["deliveries"]]})
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


def _insert(session: Session, plan: Plan) -> None:
    """Write a new plan and its shipments in two statements, giving the objects their ids; the
    objects stay out of the session. (The ORM's unit of work costs about 10 ms of a commander's
    wait for a plan of 60 shipments.)"""
    plan.id = session.execute(insert(PLANS).values(_columns(plan, PLANS))
                              .returning(PLANS.c.id)).scalar_one()
    if not plan.shipments:
        return
    rows = [{**_columns(shipment, SHIPMENTS), "plan_id": plan.id} for shipment in plan.shipments]
    if session.get_bind().dialect.name == "postgresql":
        # The ids drawn first, then the rows sent as one JSON document (`insert_rows`): an
        # INSERT of 60 rows with RETURNING is a statement of 900 placeholders that psycopg
        # parses anew for every plan (5 ms).
        ids = sorted(session.scalars(
            select(func.nextval(func.pg_get_serial_sequence(SHIPMENTS.name, "id")))
            .select_from(func.generate_series(1, len(rows)))).all())
        insert_rows(session, SHIPMENTS, [{**row, "id": shipment_id}
                                          for row, shipment_id in zip(rows, ids, strict=True)])
    else:
        ids = session.scalars(insert(SHIPMENTS).returning(SHIPMENTS.c.id,
                                                          sort_by_parameter_order=True),
                              rows).all()
    for shipment, shipment_id in zip(plan.shipments, ids, strict=True):
        shipment.id, shipment.plan_id = shipment_id, plan.id


def _columns(row: Plan | Shipment, table: Table) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in table.columns
            if column.key not in ("id", "plan_id")}


def _held(session: Session, plan: Plan, reservation_id: int | None,
          expires_at: datetime | None) -> bool:
    """`_moved` by HOLD_OK for a plan just written by `_insert`, its hold written with it."""
    reservations = [reservation_id] if reservation_id else []
    return _moved(session, plan, lifecycle.HOLD_OK,
                  {"reservations": reservations, "hold_expires_at": expires_at},
                  {"reservation_id": reservation_id})


def _moved(session: Session, plan: Plan, action: str, values: dict[str, Any] | None = None,
           shipment_values: dict[str, Any] | None = None) -> bool:
    """`_move` for a plan read or written in an earlier transaction (not in this session): two
    UPDATEs guarded by the status and the time of that read, the objects changed alike. (The
    ORM would load the plan and its shipments again under a lock, then flush each shipment: a
    third of the allocation's time for a cancel of 62 shipments.) False when another request
    moved or changed the plan meanwhile (every write of a plan stamps `updated_at`); the caller
    then goes the ORM way, which refuses or follows what was done."""
    values, shipment_values = values or {}, shipment_values or {}
    before = plan.status
    after = lifecycle.next_status(before, action, plan.id)
    now = datetime.now(UTC)
    moved = session.execute(update(PLANS).where(PLANS.c.id == plan.id, PLANS.c.status == before,
                                                PLANS.c.updated_at == plan.updated_at)
                            .values(status=after, updated_at=now, **values))
    if moved.rowcount != 1:
        return False
    moving = lifecycle.shipment_status(before, before, after)
    session.execute(update(SHIPMENTS).where(SHIPMENTS.c.plan_id == plan.id,
                                            SHIPMENTS.c.status == before)
                    .values(status=moving, **shipment_values))
    for name, value in values.items():
        setattr(plan, name, value)
    plan.status, plan.updated_at = after, now
    for shipment in plan.shipments:
        if shipment.status == before:
            shipment.status = moving
            for name, value in shipment_values.items():
                setattr(shipment, name, value)
    event = lifecycle.EVENTS.get(action)
    if event:
        events.record(session, outbox, event, plan_event(plan))
    return True


def _claim(session: Session, kept: KeptAnswer | None) -> None:
    if kept is not None:
        kept.claim(session)


def _answer(session: Session, kept: KeptAnswer | None, plan: Plan) -> None:
    if kept is not None:
        kept.answer(session, plan)


def _plan(session: Session, plan_id: int, lock: bool = False) -> Plan:
    plan = session.get(Plan, plan_id, with_for_update=lock or None)
    if plan is None:
        raise NotFound(_("no allocation plan %(plan)s", plan=plan_id))
    return plan


def _expiry(hold: dict, ttl_s: int) -> datetime:
    """When a hold runs out: as the inventory says, else (an older inventory) from its TTL."""
    said = hold.get("expires_at")
    if said:
        return datetime.fromisoformat(said.replace("Z", "+00:00"))
    return datetime.now(UTC) + timedelta(seconds=ttl_s)


def _ran_out(exc: RemoteError) -> bool:
    """The inventory refused because the hold is no more (its time ran out)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    return exc.status == 409 and body.get("reservation_status") == "expired"


def _lapsed(plan: Plan) -> Conflict:
    at = plan.hold_expires_at.isoformat(timespec="seconds") if plan.hold_expires_at else "?"
    return Conflict(_("plan %(plan)s's hold ran out at %(at)s: hold it again (POST "
                      "/api/v1/allocations/%(plan)s/hold) or cancel it", plan=plan.id, at=at),
                    extra={"plan_status": plan.status})


def _check_on_network(graph: RoadGraph, demands: list[solver.Demand]) -> None:
    for demand in demands:
        try:
            graph.node_index(demand.node)
        except KeyError:
            raise InvalidInput(_("site %(site)r is at road node %(node)r, which the current "
                                 "road network does not have", site=demand.site,
                                 node=demand.node),
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


def norm(item: dict, kind: str | None) -> tuple[float, float]:
    """An item's norm for an incident of type `kind`, per person once and per person per day:
    the type's own where the item names it (heaters for snow and ice), else the general one."""
    chosen = (item.get("type_norms") or {}).get(kind) if kind else None
    chosen = item if chosen is None else chosen
    return chosen.get("per_person") or 0.0, chosen.get("per_person_day") or 0.0


def derived_demands(sites: list[dict], items: list[dict], days: int,
                    kind: str | None = None) -> list[dict]:
    """Demands from population and the items' norms for the incident's type: per person once,
    per person per day (daily needs, water and food, come first)."""
    out = []
    for site in sites:
        people = site.get("population") or 0
        if people <= 0:
            continue
        for item in items:
            once, daily = norm(item, kind)
            need = people * once + people * daily * days
            if need > 0:
                out.append({"site": site["id"], "item": item["sku"], "quantity": math.ceil(need),
                            "priority": 1 if daily else 2})
    return out


def depots(network: Network, sites: list[dict], graph: RoadGraph,
           items: list[str]) -> solver.DepotTable:
    """The solver's depot table, straight from the inventory's columns (no object per depot)."""
    w, s = network.warehouses, network.stock
    affected = {site["township"] for site in sites if site.get("township")}
    place = network.places()
    available = np.zeros((len(w["code"]), len(items)), dtype=np.int64, order="F")
    minimum = np.zeros_like(available)
    if len(s):
        number = s.number()
        column = np.full(len(s.skus), -1, dtype=np.int64)  # item number -> the plan's column
        for i, sku in enumerate(items):
            if sku in number:
                column[number[sku]] = i
        for part in s.parts():  # the base, then what changed since: the later wins
            cols = column[part.item]
            keep = cols >= 0
            rows, cols = part.warehouse[keep], cols[keep]
            available[rows, cols] = np.maximum(part.numbers["available"][keep], 0)
            minimum[rows, cols] = part.numbers["min"][keep]
    return solver.DepotTable(
        codes=list(w["code"]), node=network.nodes(graph),
        active=place.status == ACTIVE,
        in_incident=np.fromiter((t in affected for t in place.township), dtype=bool,
                                count=len(place.township)),
        township=place.township, county=place.county,
        items=list(items), available=available, minimum=minimum, level=place.level)


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
                    reason=shipment.reason[:600], reason_parts=i18n.dump(shipment.reason),
                    status=status, delivered=0)


def demand_json(demand: solver.Demand) -> dict:
    return {"site": demand.site, "item": demand.item, "quantity": demand.quantity,
            "priority": demand.priority}


def trip_json(trip: trips.Trip) -> dict:
    return {"from": trip.from_, "to": trip.to, "vehicle": trip.vehicle,
            "capacity_kg": trip.capacity_kg,
            "lines": [{"item": item, "quantity": quantity} for item, quantity in trip.lines],
            "weight_kg": trip.weight_kg, "minutes": trip.minutes,
            "distance_km": trip.distance_km, "path": list(trip.path)}


def unit_weights(catalogue: list[dict]) -> dict[str, float]:
    return {item["sku"]: float(item.get("unit_weight_kg") or 0.0) for item in catalogue}


def unmet_json(unmet: solver.Unmet) -> dict:
    return {"site": unmet.site, "item": unmet.item, "quantity": unmet.quantity,
            "reason": unmet.reason, "detail": unmet.detail,
            "detail_parts": i18n.dump(unmet.detail)}


def plan_event(plan: Plan) -> dict:
    return {"id": plan.id, "incident": plan.incident_id, "status": plan.status,
            "graph_version": plan.graph_version, "cost": plan.cost,
            "objective": plan.objective, "trips": len(plan.trips or []), "drill": plan.drill,
            "hold_expires_at": plan.hold_expires_at.isoformat().replace("+00:00", "Z")
            if plan.hold_expires_at else None,
            "shipments": [{"id": s.id, "from": s.source, "to": s.site, "item": s.item,
                           "quantity": s.quantity} for s in plan.shipments],
            "unmet": [{k: v for k, v in u.items() if k != "detail_parts"} for u in plan.unmet]}

