"""The road network as GeoJSON, the form of `PUT /roads` and `GET /roads`: reading (every
problem named by feature and field) and writing, to and from the columns of a RoadTable."""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from allocation_svc.roadtable import CLASS_SPEED_KMH, OPEN, STATUS_CODES, STATUS_NAMES, RoadTable


class InvalidRoads(ValueError):
    """A GeoJSON road document that cannot be imported; `index` and `field` say where."""

    def __init__(self, index: int | None, field: str, problem: str) -> None:
        where = "document" if index is None else f"feature {index}"
        super().__init__(f"{where}: {field}: {problem}")
        self.index, self.field = index, field


@contextmanager
def gc_paused() -> Iterator[None]:
    """Millions of small dicts make the cycle collector rescan them again and again (GeoJSON of
    a national network builds 5x faster without it); nothing built here can form a cycle."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@gc_paused()
def roads_geojson(roads: RoadTable) -> dict[str, Any]:
    """The road table as the GeoJSON FeatureCollection of `PUT /roads`: Point nodes, then
    LineString edges (a `speed_factor` below 1 rides along so that nothing is lost)."""
    lon, lat = roads.node_lon.tolist(), roads.node_lat.tolist()
    features: list[dict[str, Any]] = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [x, y]},
         "properties": {"id": node}}
        for node, x, y in zip(roads.node_ids, lon, lat, strict=True)]
    ids = roads.node_ids
    for eid, a, b, length, cls, speed, oneway, status, factor in zip(
            roads.edge_ids, roads.edge_from.tolist(), roads.edge_to.tolist(),
            roads.length_km.tolist(), roads.road_class.tolist(), roads.speed_kmh.tolist(),
            roads.oneway.tolist(), roads.status.tolist(), roads.speed_factor.tolist(),
            strict=True):
        props: dict[str, Any] = {"id": eid, "from": ids[a], "to": ids[b], "length_km": length,
                                 "road_class": cls}
        if not math.isnan(speed):
            props["speed_kmh"] = speed
        props["oneway"] = oneway
        props["status"] = STATUS_NAMES[status]
        if factor != 1.0:
            props["speed_factor"] = factor
        features.append({"type": "Feature",
                         "geometry": {"type": "LineString",
                                      "coordinates": [[lon[a], lat[a]], [lon[b], lat[b]]]},
                         "properties": props})
    return {"type": "FeatureCollection", "features": features}


@gc_paused()
def roads_from_geojson(doc: dict[str, Any]) -> RoadTable:
    """Import a GeoJSON road network (the inverse of `roads_geojson`). Raises `InvalidRoads`
    (a ValueError) naming the feature index and field of the first problem."""
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise InvalidRoads(None, "type", "must be 'FeatureCollection'")
    features = doc.get("features")
    if not isinstance(features, list):
        raise InvalidRoads(None, "features", "must be a list")
    nodes: dict[str, int] = {}
    node_lon: list[float] = []
    node_lat: list[float] = []
    lines = []
    for i, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        kind = geometry.get("type") if isinstance(geometry, dict) else None
        props = feature.get("properties") if isinstance(feature, dict) else None
        if kind not in ("Point", "LineString"):
            raise InvalidRoads(i, "geometry.type", "must be 'Point' or 'LineString'")
        if not isinstance(props, dict):
            raise InvalidRoads(i, "properties", "must be an object")
        if kind == "LineString":
            lines.append((i, feature, props))
            continue
        node = _text(i, props, "id", feature.get("id"))
        if node in nodes:
            raise InvalidRoads(i, "properties.id", f"duplicate node id {node!r}")
        coords = geometry.get("coordinates")
        if not (isinstance(coords, list) and len(coords) >= 2 and _finite(coords[0])
                and _finite(coords[1]) and -180 <= coords[0] <= 180 and -90 <= coords[1] <= 90):
            raise InvalidRoads(i, "geometry.coordinates", "must be [lon, lat] in degrees")
        nodes[node] = len(nodes)
        node_lon.append(float(coords[0]))
        node_lat.append(float(coords[1]))

    edge_ids: list[str] = []
    seen: set[str] = set()
    rows: list[tuple] = []
    for i, feature, props in lines:
        edge = _text(i, props, "id", feature.get("id"))
        if edge in seen:
            raise InvalidRoads(i, "properties.id", f"duplicate edge id {edge!r}")
        seen.add(edge)
        ends = []
        for field in ("from", "to"):
            node = props.get(field)
            if not isinstance(node, str) or node not in nodes:
                raise InvalidRoads(i, f"properties.{field}", f"unknown node {node!r}")
            ends.append(nodes[node])
        length = props.get("length_km")
        if not _finite(length) or length < 0:
            raise InvalidRoads(i, "properties.length_km", "must be a number >= 0")
        cls = props.get("road_class")
        if cls not in CLASS_SPEED_KMH:
            raise InvalidRoads(i, "properties.road_class",
                               f"must be one of {', '.join(CLASS_SPEED_KMH)}")
        speed = props.get("speed_kmh")
        if speed is not None and not (_finite(speed) and speed > 0):
            raise InvalidRoads(i, "properties.speed_kmh", "must be a positive number")
        oneway = props.get("oneway", False)
        if not isinstance(oneway, bool):
            raise InvalidRoads(i, "properties.oneway", "must be true or false")
        status = props.get("status", STATUS_NAMES[OPEN])
        if status not in STATUS_CODES:
            raise InvalidRoads(i, "properties.status",
                               f"must be one of {', '.join(STATUS_CODES)}")
        factor = props.get("speed_factor", 1.0)
        if not (_finite(factor) and 0 < factor <= 1):
            raise InvalidRoads(i, "properties.speed_factor", "must be > 0 and <= 1")
        edge_ids.append(edge)
        rows.append((*ends, length, cls, np.nan if speed is None else speed, oneway,
                     STATUS_CODES[status], factor))
    a, b, length, cls, speed, oneway, status, factor = zip(*rows, strict=True) if rows else \
        ((),) * 8
    return RoadTable(
        node_ids=list(nodes), node_lon=np.array(node_lon, dtype=np.float64),
        node_lat=np.array(node_lat, dtype=np.float64), edge_ids=edge_ids,
        edge_from=np.array(a, dtype=np.int32), edge_to=np.array(b, dtype=np.int32),
        length_km=np.array(length, dtype=np.float64), road_class=np.array(cls, dtype=object),
        speed_kmh=np.array(speed, dtype=np.float64), oneway=np.array(oneway, dtype=bool),
        status=np.array(status, dtype=np.int8), speed_factor=np.array(factor, dtype=np.float64))


def _text(index: int, props: dict[str, Any], field: str, fallback: Any) -> str:
    value = props.get(field, fallback)
    if not isinstance(value, str) or not value:
        raise InvalidRoads(index, f"properties.{field}", "must be a non-empty string")
    return value


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
