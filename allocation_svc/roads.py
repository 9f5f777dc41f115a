"""The road network in the allocation database, its versions, and the in-memory graph of the
current version.

Every change makes a new `graph_version`. A process keeps the graphs it has built by version: an
unchanged network is never reloaded, and a batch of road events advances the cached graph of the
version before it (a copy of the weights) instead of reloading a million rows.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session, aliased

from allocation_svc import geojson
from allocation_svc.inventory import Inventory
from allocation_svc.lifecycle import DISPATCHED, PLANNED
from allocation_svc.models import GraphVersion, Plan, RoadEdge, RoadNode, outbox
from allocation_svc.permissions import NEAR_KM, reports_near_only, require, require_near
from allocation_svc.roadgraph import NoRoute, RoadGraph
from allocation_svc.roadtable import DEGRADED, STATUS_CODES, STATUS_NAMES, RoadTable
from shared import events
from shared.auth import Identity
from shared.client import RemoteError
from shared.db import many_rows
from shared.errors import Conflict, InvalidInput, NotFound
from shared.i18n import _

CHUNK = 20_000
LOAD_SLICE = 50_000  # rows of the network read at once (a few MiB as Python rows)


def current_version(session: Session) -> int:
    return session.scalar(select(func.max(GraphVersion.version))) or 0


def import_roads(session: Session, identity: Identity, doc: dict[str, Any],
                 allow_empty: bool = False) -> dict[str, Any]:
    """Replace the whole network with a GeoJSON document; answer the new version. A document
    without roads would close every route at once, so it takes `allow_empty` to mean it."""
    require(identity, "roads.write")
    try:
        table = geojson.roads_from_geojson(doc)
    except ValueError as exc:
        raise InvalidInput(f"road network rejected: {exc}",
                           errors={"features": [str(exc)]}) from None
    if table.edge_count == 0 and not allow_empty:
        raise InvalidInput("road network rejected: it has no roads and would replace every "
                           "road; send ?allow_empty=true to mean that",
                           errors={"features": ["no LineString roads (allow_empty=true to "
                                                "replace the network with none)"]})
    return replace_network(session, identity, table)


def replace_network(session: Session, identity: Identity, table: RoadTable) -> dict[str, Any]:
    session.execute(delete(RoadEdge))
    session.execute(delete(RoadNode))
    _insert_chunks(session, RoadNode, [
        {"id": node, "lon": lon, "lat": lat} for node, lon, lat in
        zip(table.node_ids, table.node_lon.tolist(), table.node_lat.tolist(), strict=True)])
    ids = table.node_ids
    _insert_chunks(session, RoadEdge, [
        {"id": eid, "from_node": ids[a], "to_node": ids[b], "length_km": length,
         "road_class": cls, "speed_kmh": None if np.isnan(speed) else speed,
         "oneway": oneway, "status": STATUS_NAMES[status], "speed_factor": factor}
        for eid, a, b, length, cls, speed, oneway, status, factor in zip(
            table.edge_ids, table.edge_from.tolist(), table.edge_to.tolist(),
            table.length_km.tolist(), table.road_class.tolist(), table.speed_kmh.tolist(),
            table.oneway.tolist(), table.status.tolist(), table.speed_factor.tolist(),
            strict=True)])
    version = _new_version(session, identity, "import", None)
    events.record(session, outbox, "road.changed", {
        "graph_version": version, "kind": "import", "nodes": table.node_count,
        "edges": table.edge_count})
    return {"graph_version": version, "nodes": table.node_count, "edges": table.edge_count}


def report_events(session: Session, identity: Identity, data: dict[str, Any],
                  inventory: Inventory | None = None) -> dict[str, Any]:
    """Closures, slow sections and reopenings; one new version for the whole batch. A keeper's
    or reporter's only near its depots, which `inventory` knows (without it, none is near)."""
    require(identity, "roads.report")
    applied = []
    for index, event in enumerate(data["events"]):
        factor = event.get("speed_factor")
        degraded = STATUS_CODES[event["status"]] == DEGRADED
        if degraded and factor is None:
            raise InvalidInput("a degraded road needs its speed_factor (0 < f <= 1)",
                               errors={f"events.{index}.speed_factor": ["required when degraded"]})
        factor = factor if degraded else 1.0
        changed = session.execute(update(RoadEdge).where(RoadEdge.id == event["edge"]).values(
            status=event["status"], speed_factor=factor, reason=event.get("reason")))
        if changed.rowcount == 0:
            raise InvalidInput(f"no road edge {event['edge']!r}",
                               errors={f"events.{index}.edge": ["unknown edge id"]})
        applied.append({"edge": event["edge"], "status": event["status"],
                        "speed_factor": factor, "reason": event.get("reason")})
    if reports_near_only(identity):  # after the loop: an unknown edge is 422, not 403
        _require_from_the_spot(session, identity, data["events"], inventory)
    version = _new_version(session, identity, "events", applied)
    events.record(session, outbox, "road.changed", {"graph_version": version, "kind": "events",
                                                    "events": applied, "actor": identity.actor})
    _publish_affected(session, version, applied)
    return {"graph_version": version, "events": applied}


def _require_from_the_spot(session: Session, identity: Identity, events: list[dict],
                           inventory: Inventory | None) -> None:
    """A keeper's or reporter's report: each event with its reason, each road near a depot
    named on its token (see allocation_svc.permissions)."""
    for index, event in enumerate(events):
        if not event.get("reason"):
            raise InvalidInput(_("a %(role)s says why for each road it reports",
                                 role=identity.role),
                               errors={f"events.{index}.reason": [_("required for this role")]})
    nodes = set()
    for code in identity.scope if inventory is not None else ():
        try:
            nodes.add(inventory.warehouse(code).get("road_node"))
        except RemoteError as exc:
            if exc.status != 404:
                raise
    require_near(identity, events, near_edges(session, nodes - {None}, NEAR_KM))


def near_edges(session: Session, nodes: set[str], km: float) -> set[str]:
    """The edges with an end within `km` along the roads of `nodes`, whatever the roads' status
    and in either direction (a closed road is still where it is): a search bounded by `km`,
    one query a ring of nodes."""
    reach = dict.fromkeys(nodes, 0.0)
    ring, near = set(nodes), set()
    while ring:
        rows = session.execute(select(RoadEdge.id, RoadEdge.from_node, RoadEdge.to_node,
                                      RoadEdge.length_km)
                               .where(RoadEdge.from_node.in_(ring) | RoadEdge.to_node.in_(ring)))
        after: set[str] = set()
        for edge, a, b, length in rows:
            near.add(edge)
            for here, there in ((a, b), (b, a)):
                if here in ring and reach[here] + length <= km \
                        and reach[here] + length < reach.get(there, math.inf):
                    reach[there] = reach[here] + length
                    after.add(there)
        ring = after
    return near


def _publish_affected(session: Session, version: int, applied: list[dict]) -> None:
    """`allocation.affected` for each plan still on the way (planned or dispatched) whose
    shipments drive a road just closed or slowed, with the shipments and trips it hits.
    Re-planning stays the commander's decision: nothing else changes here."""
    hit = [e for e in applied if e["status"] != "open"]
    if not hit:
        return
    status = {e["edge"]: e["status"] for e in hit}
    pairs = {frozenset((a, b)): edge for edge, a, b in session.execute(
        select(RoadEdge.id, RoadEdge.from_node, RoadEdge.to_node)
        .where(RoadEdge.id.in_(list(status))))}

    def edges_on(path: list[str]) -> set[str]:
        return {pairs[pair] for pair in map(frozenset, zip(path, path[1:], strict=False))
                if pair in pairs}

    live = (PLANNED, DISPATCHED)
    for plan in session.scalars(select(Plan).where(Plan.status.in_(live))):
        shipments = [(s, edges_on(s.path)) for s in plan.shipments if s.status in live]
        shipments = [(s, edges) for s, edges in shipments if edges]
        if not shipments:
            continue
        trips = [t for t in plan.trips or [] if edges_on(t["path"])]
        events.record(session, outbox, "allocation.affected", {
            "id": plan.id, "incident": plan.incident_id, "status": plan.status,
            "graph_version": version, "drill": plan.drill,
            "edges": [{"edge": edge, "status": status[edge]}
                      for edge in sorted(set().union(*(edges for _, edges in shipments)))],
            "shipments": [s.id for s, _ in shipments],
            "units": sum(s.quantity - s.delivered for s, _ in shipments),
            "trips": [{"from": t["from"], "to": t["to"], "vehicle": t["vehicle"]}
                      for t in trips]})


def _new_version(session: Session, identity: Identity, kind: str, applied: list | None) -> int:
    if session.get_bind().dialect.name == "postgresql":  # one writer of versions at a time
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext('emsupply.graph_versions'))"))
    version = current_version(session) + 1
    session.add(GraphVersion(version=version, kind=kind, events=applied, actor=identity.actor,
                             at=datetime.now(UTC)))
    session.flush()
    return version


def _insert_chunks(session: Session, model, rows: list[dict]) -> None:
    for start in range(0, len(rows), CHUNK):
        session.execute(insert(model), rows[start:start + CHUNK])


def load_table(session: Session) -> RoadTable:
    """The network as columns, read `LOAD_SLICE` rows at a time, each slice made into arrays
    before the next is read: a nation's 1.6 million rows never stand in memory at once as
    Python rows (a process kept their room: its graph cost it 876 MiB, 476 read this way), and
    an edge's ends come as node numbers from the database, not as strings to look up."""
    with many_rows():
        return _read_table(session)


def _read_table(session: Session) -> RoadTable:
    node_ids: list[str] = []
    seqs, lons, lats = [], [], []
    nodes = select(RoadNode.seq, RoadNode.id, RoadNode.lon, RoadNode.lat).order_by(RoadNode.seq)
    for part in _slices(session, nodes):
        seq, ids, lon, lat = zip(*part, strict=True)
        node_ids.extend(ids)
        seqs.append(np.array(seq, dtype=np.int64))
        lons.append(np.array(lon, dtype=np.float64))
        lats.append(np.array(lat, dtype=np.float64))
    node_seq = _joined(seqs, np.int64)
    tail, head = aliased(RoadNode), aliased(RoadNode)
    edges = (select(RoadEdge.id, tail.seq, head.seq, RoadEdge.length_km, RoadEdge.road_class,
                    RoadEdge.speed_kmh, RoadEdge.oneway, RoadEdge.status, RoadEdge.speed_factor)
             .outerjoin(tail, tail.id == RoadEdge.from_node)
             .outerjoin(head, head.id == RoadEdge.to_node)
             .order_by(RoadEdge.seq))
    edge_ids: list[str] = []
    classes: dict[str, str] = {}  # one string per class, not one per edge
    parts: dict[str, list[np.ndarray]] = {name: [] for name in (
        "tail", "head", "length", "class", "speed", "oneway", "status", "factor")}
    for part in _slices(session, edges):
        ids, tails, heads, length, road_class, speed, oneway, status, factor = zip(
            *part, strict=True)
        if None in tails or None in heads:
            edge = ids[next(i for i, (t, h) in enumerate(zip(tails, heads, strict=True))
                            if t is None or h is None)]
            raise LookupError(f"road edge {edge} ends at a node the network does not have")
        edge_ids.extend(ids)
        parts["tail"].append(np.searchsorted(node_seq, np.array(tails, dtype=np.int64)))
        parts["head"].append(np.searchsorted(node_seq, np.array(heads, dtype=np.int64)))
        parts["length"].append(np.array(length, dtype=np.float64))
        parts["class"].append(np.array([classes.setdefault(c, c) for c in road_class],
                                       dtype=object))
        parts["speed"].append(np.array([np.nan if v is None else v for v in speed],
                                       dtype=np.float64))
        parts["oneway"].append(np.array(oneway, dtype=bool))
        parts["status"].append(np.array([STATUS_CODES[v] for v in status], dtype=np.int8))
        parts["factor"].append(np.array(factor, dtype=np.float64))
    return RoadTable(
        node_ids=node_ids,
        node_lon=_joined(lons, np.float64),
        node_lat=_joined(lats, np.float64),
        edge_ids=edge_ids,
        edge_from=_joined(parts["tail"], np.int32),
        edge_to=_joined(parts["head"], np.int32),
        length_km=_joined(parts["length"], np.float64),
        road_class=_joined(parts["class"], object),
        speed_kmh=_joined(parts["speed"], np.float64),
        oneway=_joined(parts["oneway"], bool),
        status=_joined(parts["status"], np.int8),
        speed_factor=_joined(parts["factor"], np.float64),
    )


def _slices(session: Session, query) -> Iterator[Sequence]:
    """The rows of `query` as the driver's tuples, a slice at a time, on the session's own
    connection. Half the time of SQLAlchemy's rows for a nation's 1.6 million (whose rows are
    turned into arrays at once, so nothing of the result layer is missed). Not a server-side
    cursor: PostgreSQL plans one of those for its first rows (index look-ups for the join, ten
    times slower); the driver holds the whole answer in C until done instead."""
    sql = str(query.compile(dialect=session.get_bind().dialect,
                            compile_kwargs={"literal_binds": True}))
    cursor = session.connection().connection.cursor()
    try:
        cursor.execute(sql)
        while part := cursor.fetchmany(LOAD_SLICE):
            yield part
    finally:
        cursor.close()


def _joined(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


class GraphCache:
    """The graphs this process has built, newest kept, keyed by version.

    `trees(namespace)` makes the cache of shortest-path trees of a freshly loaded network (by
    default in-process; shared through Redis when configured). The namespace names the import
    the network comes from, so a tree is never served for another network of the same version.
    """

    def __init__(self, keep: int = 3, trees=None):
        self.keep = keep
        self.trees = trees
        self.graphs: OrderedDict[int, RoadGraph] = OrderedDict()
        self.lock = threading.Lock()
        self.loads = 0

    def current(self, session: Session) -> RoadGraph:
        version = current_version(session)
        if version == 0:
            raise NotFound("no road network has been imported yet (PUT /api/v1/roads)")
        with self.lock:
            graph = self.graphs.get(version)
            if graph is None:
                graph = self._advance(session, version) or self._load(session, version)
                self.graphs[version] = graph
                while len(self.graphs) > self.keep:
                    self.graphs.popitem(last=False)
            return graph

    def _advance(self, session: Session, version: int) -> RoadGraph | None:
        previous = self.graphs.get(version - 1)
        record = session.get(GraphVersion, version)
        if previous is None or record is None or record.kind != "events":
            return None
        return previous.with_events([(e["edge"], e["status"], e["speed_factor"])
                                     for e in record.events])

    def _load(self, session: Session, version: int) -> RoadGraph:
        self.loads += 1
        imported = session.execute(select(GraphVersion.version, GraphVersion.at).where(
            GraphVersion.kind == "import", GraphVersion.version <= version)
            .order_by(GraphVersion.version.desc()).limit(1)).first()
        namespace = f"{imported.version}-{imported.at.isoformat()}" if imported else "none"
        cache = self.trees(namespace) if self.trees else None
        return RoadGraph(load_table(session), version, cache)


def export_roads(session: Session, cache: GraphCache) -> dict[str, Any]:
    graph = cache.current(session)
    doc = geojson.roads_geojson(graph.table)
    doc["graph_version"] = graph.version
    return doc


def ensure_network(session: Session, cache: GraphCache) -> RoadGraph:
    try:
        return cache.current(session)
    except NotFound:
        raise Conflict("no road network has been imported yet; PUT /api/v1/roads first") from None


def route(graph: RoadGraph, inventory: Inventory, origin: str, destination: str) -> dict[str, Any]:
    """The fastest route on `graph` between two road nodes or warehouse codes; 422 when no open
    road joins them."""
    start = _node(graph, inventory, origin, "from")
    end = _node(graph, inventory, destination, "to")
    try:
        found = graph.route(start, end)
    except NoRoute as exc:
        raise InvalidInput(f"no open road joins {origin} and {destination}: {exc}",
                           errors={"to": ["no open road from 'from'"]}) from None
    return {"graph_version": graph.version, "minutes": found.minutes,
            "distance_km": found.distance_km, "path": list(found.path),
            "geometry": {"type": "LineString", "coordinates": found.coordinates}}


def _node(graph: RoadGraph, inventory: Inventory, name: str, field: str) -> str:
    """A road node id as it is, or the road node of the warehouse with that code."""
    with contextlib.suppress(KeyError):
        graph.node_index(name)
        return name
    try:
        node = inventory.warehouse(name).get("road_node")
    except RemoteError as exc:
        if exc.status != 404:
            raise
        node = None
    if not node:
        raise InvalidInput(f"{name!r} is neither a road node nor a warehouse with one",
                           errors={field: ["unknown road node or warehouse code"]})
    return node
