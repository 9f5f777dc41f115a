"""The warehouses' road nodes are looked up once per network of warehouses and road layout,
not for every plan: a nation has 500,000 of them (issue 12)."""

from __future__ import annotations

import numpy as np

from allocation_svc.inventory import merged


class Graph:
    def __init__(self):
        self.layout, self.lookups, self.looked_up = object(), 0, 0

    def node_indexes(self, ids):
        self.lookups += 1
        self.looked_up += len(ids)
        return np.array([int(i[1:]) if i else -1 for i in ids], dtype=np.int64)


def full() -> dict:
    return {"full": True, "version": "1", "catalogue": 1,
            "warehouses": {"code": ["A", "B"], "level": ["county", "township"],
                           "path": ["/P/A/", "/P/A/B/"], "status": ["active", "active"],
                           "road_node": ["n4", "n7"]},
            "stock": {"warehouse": [0], "item": ["TENT"], "on_hand": [5], "available": [5],
                      "expired": [0], "in_transit": [0], "min": [0], "target": [0]}}


def since(warehouses=None, on_hand=4) -> dict:
    return {"full": False, "version": "2", "catalogue": 1, "warehouses": warehouses,
            "stock": {"warehouse": [0], "item": ["TENT"], "on_hand": [on_hand],
                      "available": [on_hand], "expired": [0], "in_transit": [0], "min": [0],
                      "target": [0]}}


def test_a_stock_change_keeps_the_nodes_and_a_warehouse_change_finds_them_again():
    graph = Graph()
    network = merged(None, full())
    assert network.nodes(graph).tolist() == [4, 7]
    moved = merged(network, since())
    assert moved.nodes(graph) is network.nodes(graph) and graph.lookups == 1
    assert [row[2] for row in moved.stock.rows()] == [4]
    assert [row[2] for row in network.stock.rows()] == [5]
    edited = merged(moved, since({"position": [1], "code": ["B"], "level": ["township"],
                                  "path": ["/P/A/B/"], "status": ["closed"],
                                  "road_node": ["n9"]}))
    assert edited.nodes(graph).tolist() == [4, 9] and graph.lookups == 2
    assert graph.looked_up == 3  # the edited warehouse alone, not every one again
    assert moved.nodes(graph).tolist() == [4, 7]  # the older network's, untouched
    added = merged(edited, since({"position": [2], "code": ["C"], "level": ["village"],
                                  "path": ["/P/A/B/C/"], "status": ["active"],
                                  "road_node": ["n2"]}))
    again = merged(added, since({"position": [0], "code": ["A"], "level": ["county"],
                                 "path": ["/P/A/"], "status": ["active"], "road_node": ["n5"]}))
    assert again.nodes(graph).tolist() == [5, 9, 2] and graph.looked_up == 5
    assert edited.places().status.tolist() == ["active", "closed"]
    other = Graph()  # another road layout
    assert edited.nodes(other).tolist() == [4, 9] and other.lookups == 1
