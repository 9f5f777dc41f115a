"""Issue 13 against the services: a restocking is bulk calls, not one call a transfer (item 5);
an empty road network is refused unless asked for, and an export can be PUT back (item 8)."""

from __future__ import annotations

import time

import pytest
from factories import build_network, build_tree, receive, roads_geojson
from harness import SECRET

from shared.client import InProcessTransport, ServiceClient


class CountingTransport(InProcessTransport):
    """The in-process transport, keeping the method and path of every call."""

    def __init__(self, app):
        super().__init__(app)
        self.calls: list[tuple[str, str]] = []

    def request(self, method, path, body, headers, timeout):
        self.calls.append((method, path))
        return super().request(method, path, body, headers, timeout)


@pytest.fixture
def counted(inventory_app, allocation_db, settings_for):
    """An allocation service whose calls to the inventory are counted."""
    from allocation_svc import create_app

    transport = CountingTransport(inventory_app)
    client = ServiceClient("inventory", "http://in-process", SECRET, transport=transport)
    app = create_app(settings_for("allocation", allocation_db.url), allocation_db, client)
    return app, transport


def stock_of(inv, warehouse: str, item: str = "TENT") -> dict:
    rows = inv.get(f"/api/v1/stock?warehouse={warehouse}&item={item}").get_json()["items"]
    return rows[0] if rows else {"on_hand": 0, "available": 0}


def test_executing_a_replenishment_is_one_bulk_call_to_the_inventory(inv, counted):
    from harness import Caller

    app, transport = counted
    alloc = Caller(app.test_client())
    build_network(inv, alloc)
    receive(inv, "KL", "TENT", 20)
    receive(inv, "QDN", "TENT", 100)
    receive(inv, "QDN", "QUILT", 100)
    for code in ("KL-T01", "KL-T02"):
        assert inv.put(f"/api/v1/warehouses/{code}/levels", {"levels": [
            {"item": "TENT", "min": 10, "target": 30},
            {"item": "QUILT", "min": 5, "target": 10}]}).status_code == 200
    commander = alloc.as_("commander")
    proposal = commander.post("/api/v1/replenishments", {}).get_json()
    pairs = {(line["source"], line["destination"]) for line in proposal["lines"]}
    assert len(pairs) >= 3  # several transfers to make
    transport.calls.clear()
    done = commander.post(f"/api/v1/replenishments/{proposal['id']}/execute")
    assert done.status_code == 200, done.get_json()
    assert transport.calls == [("POST", "/api/v1/transfers/batch")]
    assert len(done.get_json()["transfers"]) == len(pairs)
    assert stock_of(inv, "QDN", "QUILT")["on_hand"] == 100 - 20
    again = commander.post(f"/api/v1/replenishments/{proposal['id']}/execute")
    assert again.get_json()["transfers"] == done.get_json()["transfers"]
    assert stock_of(inv, "QDN", "QUILT")["on_hand"] == 80


def test_a_bulk_of_transfers_is_all_or_none_and_names_the_failing_one(inv):
    build_tree(inv)
    receive(inv, "QDN", "TENT", 10)
    ok = {"source": "QDN", "destination": "KL", "lines": [{"item": "TENT", "quantity": 4}]}
    short = {"source": "QDN", "destination": "LP", "lines": [{"item": "TENT", "quantity": 7}]}
    refused = inv.post("/api/v1/transfers/batch", {"transfers": [ok, short]})
    assert refused.status_code == 409, refused.get_json()
    assert refused.get_json()["detail"].startswith("transfer 1:")
    assert stock_of(inv, "QDN")["on_hand"] == 10  # the first was not sent either
    assert inv.get("/api/v1/transfers").get_json()["items"] == []
    bad = inv.post("/api/v1/transfers/batch", {"transfers": [ok, {**ok, "destination": "QDN"}]})
    assert bad.status_code == 422 and "transfers.1.destination" in bad.get_json()["errors"]


def test_a_bulk_of_transfers_is_idempotent_by_its_key(inv):
    build_tree(inv)
    receive(inv, "QDN", "TENT", 10)
    body = {"transfers": [{"source": "QDN", "destination": "KL",
                           "lines": [{"item": "TENT", "quantity": 3}]}] * 2}
    first = inv.post("/api/v1/transfers/batch", body, headers={"Idempotency-Key": "bulk-1"})
    retry = inv.post("/api/v1/transfers/batch", body, headers={"Idempotency-Key": "bulk-1"})
    assert first.status_code == retry.status_code == 201
    assert retry.get_json() == first.get_json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert stock_of(inv, "QDN")["on_hand"] == 4


def test_two_thousand_transfers_are_one_call_of_a_few_seconds(inv):
    """The issue's restocking had 2,036 transfers: one per call took minutes."""
    build_tree(inv)
    receive(inv, "QDN", "TENT", 5000)
    receive(inv, "QDN", "QUILT", 5000)
    lines = [{"item": "TENT", "quantity": 1}, {"item": "QUILT", "quantity": 2}]
    transfers = [{"source": "QDN", "destination": ("KL", "LP")[i % 2], "lines": lines}
                 for i in range(2000)]
    started = time.perf_counter()
    answer = inv.post("/api/v1/transfers/batch", {"transfers": transfers})
    elapsed = time.perf_counter() - started
    assert answer.status_code == 201, answer.get_json()
    assert len(answer.get_json()["transfers"]) == 2000
    assert stock_of(inv, "QDN")["on_hand"] == 3000
    assert stock_of(inv, "QDN", "QUILT")["on_hand"] == 1000
    assert elapsed < 15, f"{elapsed:.1f} s: over the service client's read timeout"


# --- item 8: roads ----------------------------------------------------------------------

@pytest.fixture
def mapped(inv, alloc):
    build_network(inv, alloc)
    return alloc


def test_an_empty_road_network_is_refused_naming_the_field(mapped):
    before = mapped.get("/api/v1/roads").get_json()
    for empty in ({"type": "FeatureCollection", "features": []},
                  {"type": "FeatureCollection", "features": [
                      f for f in roads_geojson()["features"]
                      if f["geometry"]["type"] == "Point"]}):
        answer = mapped.put("/api/v1/roads", empty)
        assert answer.status_code == 422, answer.get_json()
        assert answer.mimetype == "application/problem+json"
        assert list(answer.get_json()["errors"]) == ["features"]
    assert mapped.get("/api/v1/roads").get_json() == before  # nothing was wiped


def test_an_empty_road_network_is_taken_when_asked_for(mapped):
    answer = mapped.put("/api/v1/roads?allow_empty=true",
                        {"type": "FeatureCollection", "features": []})
    assert answer.status_code == 200, answer.get_json()
    assert mapped.get("/api/v1/roads").get_json()["features"] == []


def test_the_road_export_can_be_put_back_as_it_is(mapped):
    exported = mapped.get("/api/v1/roads").get_json()
    assert "graph_version" in exported
    answer = mapped.put("/api/v1/roads", exported)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["graph_version"] > exported["graph_version"]
    again = mapped.get("/api/v1/roads").get_json()
    assert again["features"] == exported["features"]


def test_a_graph_version_that_is_not_a_whole_number_is_refused(mapped):
    """Found by the campaign's schemathesis: 2.6e-42 was read as version 0 and the PUT taken."""
    exported = mapped.get("/api/v1/roads").get_json()
    answer = mapped.put("/api/v1/roads", {**exported, "graph_version": 2.5890419884777833e-42})
    assert answer.status_code == 422, answer.get_json()
    assert list(answer.get_json()["errors"]) == ["graph_version"]


# --- the campaign's findings: what schemathesis sent that the suite took or failed on ---------

def test_a_body_the_document_requires_cannot_be_left_out(inv):
    """A PATCH whose fields are all optional still needs its body: none is 422, not 200."""
    build_tree(inv)
    answer = inv.call("PATCH", "/api/v1/warehouses/KL", None)
    assert answer.status_code == 422, answer.get_json()
    assert answer.mimetype == "application/problem+json"
    assert list(answer.get_json()["errors"]) == ["json"]
    assert inv.patch("/api/v1/warehouses/KL", {"name": "Kaili"}).status_code == 200


@pytest.mark.parametrize(("path", "field"), [("/api/v1/stock?warehouse=K%00L", "warehouse"),
                                             ("/api/v1/stock?item=TE%00NT", "item"),
                                             ("/api/v1/routes?from=K%00L&to=KL", "from")])
def test_a_nul_in_the_query_string_is_422_naming_the_parameter(mapped, inv, path, field):
    """PostgreSQL cannot take a NUL in text (on the gateway's audit it was a 500): the check
    that refuses it in bodies refuses it in query strings too, before any rule of the field."""
    answer = (inv if path.startswith("/api/v1/stock") else mapped).get(path)
    assert answer.status_code == 422, answer.get_json()
    assert answer.get_json()["errors"] == {
        field: ["must not contain NUL characters or unpaired surrogates"]}
