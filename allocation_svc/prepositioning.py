"""Warnings and pre-positioning (the source document's "four earlies": early warning, early
consultation, early response, early evacuation): a weather warning names an area (townships, or
counties for all their townships) and a window, and the people it may drive from home; the
suite proposes moving stock from the backbone to the area's township centres before anything
happens, along open roads, and the commander executes the proposal as transfers (it is a
replenishment: `POST /replenishments/{id}/execute`).

What a township centre should hold: the items' norms for its share of the people (shared
equally among the area's townships) for the warning's days, less what it holds within its date
and what is on the way to it. Sources: the township's own county depot, then the prefecture
depot, then the other county depots, nearest by road first, each only above its own `min`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from allocation_svc import roads
from allocation_svc.inventory import Inventory, Network
from allocation_svc.models import Replenishment, WeatherWarning, outbox
from allocation_svc.permissions import require, require_sites
from allocation_svc.plans import norm
from allocation_svc.roadgraph import NoRoute
from allocation_svc.vocabulary import (
    ACTIVE,
    BACKBONE_LEVELS,
    COUNTY,
    REPLENISHMENT_PLANNED,
    TOWNSHIP,
)
from shared import events
from shared.auth import Identity
from shared.db import Database
from shared.errors import InvalidInput, NotFound
from shared.i18n import _


def townships_of(network: Network, area: list[str]) -> list[int]:
    """The active township centres the area names, itself or through its counties."""
    w = network.warehouses
    found = []
    for row, (code, level, path, status) in enumerate(zip(w["code"], w["level"], w["path"],
                                                           w["status"], strict=True)):
        if level == TOWNSHIP and status == ACTIVE and (
                code in area or any(f"/{name}/" in path for name in area)):
            found.append(row)
    return found


def proposals(network: Network, graph, area: list[str], people: int, days: int,
              catalogue: list[dict], kind: str | None = None) -> tuple[list[dict], list[dict]]:
    """The transfers that bring the area's township centres up to the norms (of the warning's
    type: heaters before a freeze) for `people` over `days`, and what the backbone cannot
    send."""
    w, s = network.warehouses, network.stock
    towns = townships_of(network, area)
    if not towns:
        return [], []
    share = people / len(towns)
    have: dict[tuple[int, str], int] = {}
    spare: dict[tuple[int, str], int] = {}
    for row, sku, on_hand, available, expired, coming, least, _target in s.rows():
        have[(row, sku)] = on_hand - expired + coming
        spare[(row, sku)] = max(0, available - least)
    backbone = [row for row, (level, status) in enumerate(zip(w["level"], w["status"],
                                                              strict=True))
                if level in BACKBONE_LEVELS and status == ACTIVE and w["road_node"][row]]
    lines, short = [], []
    for town in towns:
        sources = _sources(w, graph, town, backbone)
        for item in catalogue:
            once, daily = norm(item, kind)
            need = math.ceil(share * once + share * daily * days)
            wanted = need - have.get((town, item["sku"]), 0)
            for source, route in sources:
                if wanted <= 0:
                    break
                give = min(wanted, spare.get((source, item["sku"]), 0))
                if give <= 0:
                    continue
                spare[(source, item["sku"])] -= give
                wanted -= give
                lines.append({"source": w["code"][source], "destination": w["code"][town],
                              "item": item["sku"], "quantity": give, "minutes": route.minutes,
                              "distance_km": route.distance_km, "path": list(route.path)})
            if wanted > 0:
                short.append({"warehouse": w["code"][town], "item": item["sku"],
                              "quantity": wanted,
                              "reason": "the backbone has no more to spare above its min"
                              if sources else "no open road from the backbone"})
    return lines, short


def _sources(w: dict[str, list], graph, town: int, backbone: list[int]) -> list[tuple]:
    """The backbone depots that reach the township, its own county depot first, then the
    prefecture's and the other counties', nearest by road first."""
    path = [p for p in w["path"][town].split("/") if p]
    own = path[1] if len(path) > 1 else None
    reached = []
    for row in backbone:
        try:
            route = graph.route(w["road_node"][row], w["road_node"][town])
        except (NoRoute, KeyError, TypeError):
            continue
        first = w["level"][row] == COUNTY and w["code"][row] == own
        reached.append((not first, route.minutes, row, route))
    return [(row, route) for _first, _minutes, row, route in sorted(reached)]


@dataclass
class Warnings:
    db: Database
    inventory: Inventory
    graphs: roads.GraphCache

    def issue(self, session: Session, identity: Identity, data: dict[str, Any]) -> WeatherWarning:
        require(identity, "incidents.write")
        require_sites(identity, [{"warehouse": code} for code in data["area"]])
        if data["ends_at"] <= data["starts_at"]:
            raise InvalidInput(_("a warning ends after it starts"),
                               errors={"ends_at": [_("must be after starts_at")]})
        warning = WeatherWarning(type=data["type"], area=list(data["area"]),
                                 starts_at=data["starts_at"], ends_at=data["ends_at"],
                                 people=data["people"], days=data["days"],
                                 created_by=identity.actor, created_at=datetime.now(UTC))
        session.add(warning)
        session.flush()
        events.record(session, outbox, "warning.issued", {
            "id": warning.id, "type": warning.type, "area": warning.area,
            "starts_at": data["starts_at"].isoformat(), "ends_at": data["ends_at"].isoformat(),
            "people": warning.people})
        return warning

    def preposition(self, identity: Identity, warning_id: int) -> Replenishment:
        """Propose the transfers towards the warning's area (once per warning: a retry
        answers the same proposal)."""
        require(identity, "incidents.write")
        with self.db.reading() as session:
            warning = get(session, warning_id)
            require_sites(identity, [{"warehouse": code} for code in warning.area])
            if warning.replenishment_id is not None:
                return session.get(Replenishment, warning.replenishment_id)
            graph = roads.ensure_network(session, self.graphs)
        catalogue = self.inventory.items()
        network = self.inventory.network([item["sku"] for item in catalogue])
        lines, short = proposals(network, graph, warning.area, warning.people, warning.days,
                                 catalogue, warning.type)
        with self.db.unit_of_work() as session:
            warning = get(session, warning_id, lock=True)
            if warning.replenishment_id is not None:  # proposed meanwhile
                return session.get(Replenishment, warning.replenishment_id)
            proposal = Replenishment(status=REPLENISHMENT_PLANNED, graph_version=graph.version,
                                     lines=lines, short=short, transfers=[],
                                     created_by=identity.actor, created_at=datetime.now(UTC))
            session.add(proposal)
            session.flush()
            warning.replenishment_id = proposal.id
        return proposal


def get(session: Session, warning_id: int, lock: bool = False) -> WeatherWarning:
    warning = session.get(WeatherWarning, warning_id, with_for_update=lock or None)
    if warning is None:
        raise NotFound(_("no warning %(warning)s", warning=warning_id))
    return warning
