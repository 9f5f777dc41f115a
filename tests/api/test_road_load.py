"""The road network read back from the database as the graph is built from it (issue 12: a
nation's 1.6 million rows read a slice at a time, an edge's ends as node numbers), on SQLite
and PostgreSQL: what was written comes back, whatever the slice."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import update

from allocation_svc import roads
from allocation_svc.models import RoadEdge
from allocation_svc.roadtable import CLOSED, DEGRADED, OPEN, RoadTable
from shared.auth import Identity

ADMIN = Identity("admin-1", "admin")


def network() -> RoadTable:
    nodes = [f"n{i}" for i in (5, 3, 9, 1, 7)]  # not in the order of their names
    return RoadTable(
        node_ids=nodes, node_lon=np.array([108.1, 108.2, 108.3, 108.4, 108.5]),
        node_lat=np.array([26.1, 26.2, 26.3, 26.4, 26.5]),
        edge_ids=["e2", "e0", "e1", "e3"],
        edge_from=np.array([4, 0, 1, 2], dtype=np.int32),
        edge_to=np.array([0, 1, 2, 3], dtype=np.int32),
        length_km=np.array([1.5, 2.0, 3.25, 4.0]),
        road_class=np.array(["county", "village", "county", "national"], dtype=object),
        speed_kmh=np.array([np.nan, 25.0, np.nan, 70.0]),
        oneway=np.array([False, True, False, False]),
        status=np.array([OPEN, DEGRADED, CLOSED, OPEN], dtype=np.int8),
        speed_factor=np.array([1.0, 0.5, 1.0, 1.0]))


@pytest.mark.parametrize("slice_rows", [2, 50_000])
def test_the_network_comes_back_as_written(allocation_db, monkeypatch, slice_rows):
    monkeypatch.setattr(roads, "LOAD_SLICE", slice_rows)
    written = network()
    with allocation_db.unit_of_work() as session:
        roads.replace_network(session, ADMIN, written)
    with allocation_db.reading() as session:
        read = roads.load_table(session)
    assert read.node_ids == written.node_ids and read.edge_ids == written.edge_ids
    for name in ("node_lon", "node_lat", "edge_from", "edge_to", "length_km", "road_class",
                 "oneway", "status", "speed_factor"):
        assert getattr(read, name).tolist() == getattr(written, name).tolist(), name
    assert np.array_equal(read.speed_kmh, written.speed_kmh, equal_nan=True)
    assert read.edge_from.dtype == np.int32 and read.status.dtype == np.int8


def test_an_edge_to_a_node_the_network_lacks_is_named(allocation_db):
    with allocation_db.unit_of_work() as session:
        roads.replace_network(session, ADMIN, network())
        session.execute(update(RoadEdge).where(RoadEdge.id == "e1").values(to_node="n404"))
    with allocation_db.reading() as session, pytest.raises(LookupError, match="e1"):
        roads.load_table(session)
