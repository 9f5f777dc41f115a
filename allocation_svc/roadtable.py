"""The road network as columns: what the generator makes, what GeoJSON imports into, and what
the road graph is built from. Columns, not one object per road, so that a national network of a
million nodes fits in memory and loads in seconds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Default speed per road class on mountain roads, km/h (an edge's own speed_kmh wins).
CLASS_SPEED_KMH = {
    "expressway": 80.0,
    "national": 60.0,
    "provincial": 50.0,
    "county": 40.0,
    "township": 30.0,
    "village": 20.0,
}
OPEN, DEGRADED, CLOSED = 0, 1, 2
STATUS_CODES = {"open": OPEN, "degraded": DEGRADED, "closed": CLOSED}
STATUS_NAMES = {v: k for k, v in STATUS_CODES.items()}


@dataclass
class RoadTable:
    """Nodes and edges of the road network. Edge endpoints are indexes into `node_ids`.

    A two-way edge can be driven both ways; a `oneway` edge only from `edge_from` to `edge_to`.
    Travel minutes = length_km / speed_kmh * 60 / speed_factor (speed_kmh NaN means the class
    default); a CLOSED edge carries nothing.
    """

    node_ids: list[str]
    node_lon: np.ndarray  # float64
    node_lat: np.ndarray  # float64
    edge_ids: list[str]
    edge_from: np.ndarray  # int32 index into node_ids
    edge_to: np.ndarray  # int32
    length_km: np.ndarray  # float64
    road_class: np.ndarray  # object array of CLASS_SPEED_KMH keys
    speed_kmh: np.ndarray  # float64, NaN = class default
    oneway: np.ndarray  # bool
    status: np.ndarray  # int8: OPEN, DEGRADED, CLOSED
    speed_factor: np.ndarray  # float64, 1.0 unless degraded (0 < f <= 1 slows the road)

    @property
    def node_count(self) -> int:
        return len(self.node_ids)

    @property
    def edge_count(self) -> int:
        return len(self.edge_ids)

    def minutes(self) -> np.ndarray:
        """Travel minutes of every edge; +inf where closed."""
        default = np.array([CLASS_SPEED_KMH[c] for c in self.road_class], dtype=np.float64) \
            if self.edge_count else np.zeros(0)
        speed = np.where(np.isnan(self.speed_kmh), default, self.speed_kmh)
        minutes = self.length_km / speed * 60.0 / self.speed_factor
        return np.where(self.status == CLOSED, np.inf, minutes)
