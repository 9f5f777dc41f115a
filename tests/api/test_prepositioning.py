"""Warnings and pre-positioning (issue 11, item 4): a warning names an area and a window; the
suite proposes moving stock from the backbone to the area's township centres beforehand, along
open roads; the commander executes it as transfers, and asking again orders nothing new."""

from __future__ import annotations

from factories import build_network, receive

WARNING = {"type": "rainstorm", "area": ["KL-T01"], "starts_at": "2026-12-03T00:00:00Z",
           "ends_at": "2026-12-04T00:00:00Z", "people": 40, "days": 3}


def stock(inv, warehouse, item):
    rows = inv.get(f"/api/v1/stock?warehouse={warehouse}&item={item}").get_json()["items"]
    return rows[0] if rows else {"on_hand": 0}


def test_a_warning_moves_stock_towards_its_townships_before_anything_happens(inv, alloc):
    build_network(inv, alloc)
    receive(inv, "KL", "TENT", 6)  # the county depot: 6 tents, min 0
    receive(inv, "QDN", "TENT", 100)
    receive(inv, "QDN", "QUILT", 100)
    receive(inv, "KL-T01", "QUILT", 15)  # the township already holds 15 of its 40 quilts
    commander = alloc.as_("commander", actor="李伟")
    bad = commander.post("/api/v1/warnings", {**WARNING, "ends_at": "2026-12-02T00:00:00Z"})
    assert bad.status_code == 422 and "ends_at" in bad.get_json()["errors"]
    warning = commander.post("/api/v1/warnings", WARNING)
    assert warning.status_code == 201, warning.get_json()
    proposal = commander.post(f"/api/v1/warnings/{warning.get_json()['id']}/prepositioning")
    assert proposal.status_code == 201, proposal.get_json()
    lines = {(line["source"], line["item"]): line["quantity"]
             for line in proposal.get_json()["lines"]}
    # 40 people: 10 tents (0.25 each: its own county first, then the prefecture), 40 quilts
    assert lines == {("KL", "TENT"): 6, ("QDN", "TENT"): 4, ("QDN", "QUILT"): 25}
    assert all(line["destination"] == "KL-T01" for line in proposal.get_json()["lines"])
    again = commander.post(f"/api/v1/warnings/{warning.get_json()['id']}/prepositioning")
    assert again.get_json()["id"] == proposal.get_json()["id"]
    done = alloc.post(f"/api/v1/replenishments/{proposal.get_json()['id']}/execute")
    assert done.status_code == 200, done.get_json()
    assert len(done.get_json()["transfers"]) == 2
    assert stock(inv, "QDN", "TENT")["on_hand"] == 96
    # a second warning over the same township now finds its needs on the way
    second = commander.post("/api/v1/warnings", WARNING).get_json()
    nothing = commander.post(f"/api/v1/warnings/{second['id']}/prepositioning").get_json()
    assert [line for line in nothing["lines"] if line["item"] in ("TENT", "QUILT")] == []
    shown = alloc.get(f"/api/v1/warnings/{second['id']}").get_json()
    assert shown["replenishment_id"] == nothing["id"] and shown["created_by"] == "李伟"
    assert alloc.get("/api/v1/warnings/999").status_code == 404


def test_a_freeze_warning_moves_what_snow_and_ice_need(inv, alloc):
    build_network(inv, alloc)
    heater = {"sku": "HEATER", "name": "Heater", "name_zh": "取暖器", "unit": "piece",
              "type_norms": {"snow_ice": {"per_person": 0.25}}}
    assert inv.post("/api/v1/items", heater).status_code == 201
    receive(inv, "QDN", "HEATER", 50)
    commander = alloc.as_("commander")
    moved = {}
    for kind in ("snow_ice", "rainstorm"):
        warning = commander.post("/api/v1/warnings", {**WARNING, "type": kind}).get_json()
        proposal = commander.post(f"/api/v1/warnings/{warning['id']}/prepositioning")
        moved[kind] = {line["item"]: line["quantity"] for line in proposal.get_json()["lines"]}
    assert moved["snow_ice"].get("HEATER") == 10  # 40 people, one heater for four
    assert "HEATER" not in moved["rainstorm"]
