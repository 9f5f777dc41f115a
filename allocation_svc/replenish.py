"""Restocking after a response: depots below `min` are brought back to `target` by transfers
from the level above (the next active depot up the tree: the prefecture where a county has no
active depot, and further up when the level above has nothing to spare), along the fastest
roads. Sources are never drawn below their own `min`.

A depot's stock is what it has within its date plus what is on the way to it (transfers sent,
not yet received): stock past its date is no relief, and stock in transit is not ordered again,
so a second proposal right after the first is executed orders nothing new."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from allocation_svc import roads
from allocation_svc.inventory import Inventory, Network
from allocation_svc.models import Replenishment
from allocation_svc.permissions import require
from allocation_svc.roadgraph import NoRoute
from allocation_svc.vocabulary import ACTIVE, REPLENISHMENT_EXECUTED, REPLENISHMENT_PLANNED
from shared.auth import Identity
from shared.db import Database
from shared.errors import Conflict, NotFound


def proposals(network: Network, graph, within: str | None = None,
              items: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """The transfers that bring depots below min back to target, and what cannot be met."""
    w, s = network.warehouses, network.stock
    by_code = {code: i for i, code in enumerate(w["code"])}
    spare: dict[tuple[int, str], int] = {}
    below = []
    for row, sku, on_hand, available, expired, coming, least, target in s.rows():
        spare[(row, sku)] = max(0, available - least)
        counted = on_hand - expired + coming
        if (counted < least and w["status"][row] == ACTIVE and (not items or sku in items)
                and (not within or f"/{within}/" in w["path"][row])):
            below.append((counted / least if least else 1.0, row, sku, target - counted))
    lines, short = [], []
    for _ratio, row, sku, needed in sorted(below):
        code, remaining, why = w["code"][row], needed, "no active depot above"
        for source in _sources(w, by_code, row):
            give = min(remaining, spare.get((source, sku), 0))
            if give <= 0:
                why = f"no depot above {code} has {sku} to spare above its min"
                continue
            try:
                route = graph.route(w["road_node"][source], w["road_node"][row])
            except (NoRoute, KeyError, TypeError):
                why = f"no open road from {w['code'][source]}"
                continue
            spare[(source, sku)] -= give
            remaining -= give
            lines.append({"source": w["code"][source], "destination": code, "item": sku,
                          "quantity": give, "minutes": route.minutes,
                          "distance_km": route.distance_km, "path": list(route.path)})
            if remaining == 0:
                break
        if remaining:
            short.append({"warehouse": code, "item": sku, "quantity": remaining, "reason": why})
    return lines, short


def _sources(w: dict[str, list], by_code: dict[str, int], row: int) -> list[int]:
    """The active depots above a warehouse, nearest level first: its parent, then up to the
    prefecture (a county without an active depot leans on the prefecture)."""
    path = [p for p in w["path"][row].split("/") if p]
    found = []
    for code in reversed(path[:-1]):
        index = by_code.get(code)
        if index is not None and w["status"][index] == ACTIVE and w["road_node"][index]:
            found.append(index)
    return found


# Transfers per bulk call to the inventory: each is one transaction the inventory answers well
# within the service client's read timeout.
BULK_TRANSFERS = 1000


@dataclass
class Restocking:
    db: Database
    inventory: Inventory
    graphs: roads.GraphCache

    def propose(self, identity: Identity, data: dict[str, Any]) -> Replenishment:
        require(identity, "replenishment.write")
        with self.db.reading() as session:
            graph = roads.ensure_network(session, self.graphs)
        network = self.inventory.network(data.get("items") or None)
        lines, short = proposals(network, graph, data.get("within"), data.get("items"))
        replenishment = Replenishment(status=REPLENISHMENT_PLANNED, graph_version=graph.version,
                                      lines=lines, short=short, transfers=[],
                                      created_by=identity.actor, created_at=datetime.now(UTC))
        with self.db.unit_of_work() as session:
            session.add(replenishment)
        return replenishment

    def execute(self, identity: Identity, replenishment_id: int) -> Replenishment:
        """Create one transfer per (source, destination) in bulk calls to the inventory (one
        for up to `BULK_TRANSFERS`, all or none each): a national restocking of thousands of
        transfers takes seconds, not minutes of one call each. Retried safely by their keys."""
        require(identity, "replenishment.write")
        with self.db.reading() as session:
            replenishment = session.get(Replenishment, replenishment_id)
        if replenishment is None:
            raise NotFound(f"no replenishment {replenishment_id}")
        if replenishment.status == REPLENISHMENT_EXECUTED:
            return replenishment
        if replenishment.status != REPLENISHMENT_PLANNED:
            raise Conflict(f"replenishment {replenishment_id} is {replenishment.status}")
        groups: dict[tuple[str, str], list[dict]] = {}
        for line in replenishment.lines:
            groups.setdefault((line["source"], line["destination"]), []).append(
                {"item": line["item"], "quantity": line["quantity"]})
        reference = f"replenishment:{replenishment_id}"
        wanted = [{"source": source, "destination": destination, "lines": lines,
                   "reason": "replenishment", "reference": reference}
                  for (source, destination), lines in sorted(groups.items())]
        transfers = []
        for start in range(0, len(wanted), BULK_TRANSFERS):
            made = self.inventory.transfers(f"{reference}:bulk:{start}",
                                            wanted[start:start + BULK_TRANSFERS])
            transfers.extend({"id": t["id"], "source": t["source"],
                              "destination": t["destination"]} for t in made)
        with self.db.unit_of_work() as session:
            replenishment = session.get(Replenishment, replenishment_id)
            replenishment.status, replenishment.transfers = REPLENISHMENT_EXECUTED, transfers
            replenishment.executed_at = datetime.now(UTC)
        return replenishment

    def get(self, replenishment_id: int) -> Replenishment:
        with self.db.reading() as session:
            replenishment = session.get(Replenishment, replenishment_id)
        if replenishment is None:
            raise NotFound(f"no replenishment {replenishment_id}")
        return replenishment
