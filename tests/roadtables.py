"""Road tables small enough to check by hand, for the road graph's and the solver's tests."""

from __future__ import annotations

import numpy as np

from allocation_svc.roadtable import CLOSED, OPEN, RoadTable


def table_from(edges, n_nodes=None, oneway=(), closed=(), speed=60.0):
    """Edges (from, to, km) between nodes N0..; 60 km/h, so 1 minute per km."""
    n = n_nodes or 1 + max(max(a, b) for a, b, _ in edges)
    m = len(edges)
    status = np.full(m, OPEN, dtype=np.int8)
    status[list(closed)] = CLOSED
    one = np.zeros(m, dtype=bool)
    one[list(oneway)] = True
    return RoadTable(
        node_ids=[f"N{i}" for i in range(n)],
        node_lon=100.0 + np.arange(n, dtype=float),
        node_lat=20.0 + np.arange(n, dtype=float) / 10,
        edge_ids=[f"E{k}" for k in range(m)],
        edge_from=np.array([a for a, _, _ in edges], dtype=np.int32),
        edge_to=np.array([b for _, b, _ in edges], dtype=np.int32),
        length_km=np.array([km for _, _, km in edges], dtype=float),
        road_class=np.array(["county"] * m, dtype=object),
        speed_kmh=np.full(m, speed),
        oneway=one,
        status=status,
        speed_factor=np.ones(m),
    )
