"""Replenishment counts what is on the way (issue 11, item 8): stock in transit toward a depot
counts against its shortfall, so a second proposal right after the first is executed orders
nothing new; stock past its date does not count as stock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from factories import build_network, receive

from inventory_svc import shelf


@pytest.fixture
def world(inv, alloc):
    build_network(inv, alloc)
    receive(inv, "KL-T01", "TENT", 5)
    receive(inv, "KL", "TENT", 20)
    receive(inv, "QDN", "TENT", 100)
    assert inv.put("/api/v1/warehouses/KL-T01/levels", {
        "levels": [{"item": "TENT", "min": 10, "target": 30}]}).status_code == 200
    return inv, alloc


def propose(alloc, **body) -> dict:
    response = alloc.as_("commander").post("/api/v1/replenishments", {"items": ["TENT"],
                                                                      **body})
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def moved(proposal: dict) -> list[tuple]:
    return [(x["source"], x["destination"], x["item"], x["quantity"])
            for x in proposal["lines"]]


def test_a_second_proposal_after_the_first_is_executed_orders_nothing(world):
    inv, alloc = world
    first = propose(alloc)
    assert moved(first) == [("KL", "KL-T01", "TENT", 20), ("QDN", "KL-T01", "TENT", 5)]
    done = alloc.as_("commander").post(f"/api/v1/replenishments/{first['id']}/execute")
    assert done.status_code == 200, done.get_json()
    snap = inv.get("/api/v1/stock/snapshot?item=TENT").get_json()
    codes = snap["warehouses"]["code"]
    coming = {codes[w]: q for w, q in zip(snap["stock"]["warehouse"], snap["stock"]["in_transit"],
                                         strict=True)}
    assert coming["KL-T01"] == 25 and coming["KL"] == 0
    second = propose(alloc)
    assert second["lines"] == [] and second["short"] == []
    keeper = inv.as_("keeper", "KL-T01")
    for transfer in done.get_json()["transfers"]:
        assert keeper.post(f"/api/v1/transfers/{transfer['id']}/receive", {}).status_code == 200
    assert propose(alloc)["lines"] == []  # received: on hand now, and at target


def test_stock_on_the_way_lowers_what_is_ordered(world):
    inv, alloc = world
    sent = inv.post("/api/v1/transfers", {"source": "QDN", "destination": "KL-T01",
                                          "lines": [{"item": "TENT", "quantity": 3}]})
    assert sent.status_code == 201, sent.get_json()
    assert moved(propose(alloc)) == [("KL", "KL-T01", "TENT", 20), ("QDN", "KL-T01", "TENT", 2)]
    enough = inv.post("/api/v1/transfers", {"source": "QDN", "destination": "KL-T01",
                                            "lines": [{"item": "TENT", "quantity": 2}]})
    assert enough.status_code == 201
    assert propose(alloc)["lines"] == []  # 5 on hand + 5 on the way: at min, not below it


def test_stock_past_its_date_is_not_counted_as_stock(inv, alloc):
    build_network(inv, alloc)
    past = (shelf.today() - timedelta(days=3)).isoformat()
    receive(inv, "KL-T01", "WATER", 40, expires_on=past)
    receive(inv, "KL", "WATER", 100)
    assert inv.put("/api/v1/warehouses/KL-T01/levels", {
        "levels": [{"item": "WATER", "min": 10, "target": 30}]}).status_code == 200
    proposal = alloc.as_("commander").post("/api/v1/replenishments", {"items": ["WATER"]})
    assert proposal.status_code == 201, proposal.get_json()
    assert moved(proposal.get_json()) == [("KL", "KL-T01", "WATER", 30)]
