"""Who changed what (issue 11, item 6): every event carries its actor, the gateway indexes what
each event is about, and `GET /audit?entity=` answers one entity's story, oldest first."""

from __future__ import annotations

import pytest
from factories import build_tree
from gateway_helpers import issue
from harness import Bearer

from gateway import events as event_log
from shared.relay import Relay


@pytest.fixture
def live_gateway(gateway_app, serve):
    return serve(gateway_app)


def test_the_audit_of_a_depot_names_who_moved_its_stock(gateway_app, live_gateway,
                                                         inventory_db, suite_secret):
    client = gateway_app.test_client()
    admin = Bearer(client, issue(gateway_app, "admin", name="管理员"))
    build_tree(admin)
    assert admin.patch("/api/v1/warehouses/KL-T01", {"name": "Dafeng"}).status_code == 200
    keeper = Bearer(client, issue(gateway_app, "keeper", "KL-T01", name="李伟"))
    for warehouse, quantity in (("KL-T01", 3), ("KL-T01-V01", 2), ("KL-T01", 1)):
        answer = keeper.post("/api/v1/movements", {"warehouse": warehouse, "item": "TENT",
                                                   "kind": "receipt", "quantity": quantity})
        assert answer.status_code == 201, answer.get_json()
    relay = Relay("inventory", inventory_db, secret=suite_secret, gateway_url=live_gateway.url,
                  redis=None, stream="test:audit")
    try:
        assert relay.run_once() >= 3
    finally:
        relay.close()
    story = admin.get("/api/v1/audit?entity=warehouse:KL-T01").get_json()["items"]
    assert [(e["type"], e["data"].get("quantity") or e["data"]["action"], e["data"]["actor"])
            for e in story] == [("catalog.changed", "updated", "管理员"),
                                ("stock.changed", 3, "李伟"), ("stock.changed", 1, "李伟")]
    assert [e["id"] for e in story] == sorted(e["id"] for e in story)
    by_actor = admin.get("/api/v1/audit?entity=actor:李伟&limit=2").get_json()
    assert len(by_actor["items"]) == 2 and by_actor["next_cursor"]
    rest = admin.get(f"/api/v1/audit?entity=actor:李伟&cursor={by_actor['next_cursor']}"
                     ).get_json()["items"]
    assert len(rest) == 1
    assert admin.get("/api/v1/audit?entity=warehouse:NOWHERE").get_json()["items"] == []
    bad = admin.get("/api/v1/audit?entity=KL-T01")
    assert bad.status_code == 422 and "entity" in bad.get_json()["errors"]
    nul = admin.get("/api/v1/audit?entity=incident:DVe%C3%BD%00%1AU")  # the campaign's 500
    assert nul.status_code == 422 and list(nul.get_json()["errors"]) == ["entity"]


@pytest.mark.parametrize(("kind", "data", "expected"), [
    ("stock.changed", {"warehouse": "KL", "item": "TENT", "actor": "k"},
     {"warehouse:KL", "item:TENT", "actor:k"}),
    ("allocation.affected", {"id": 7, "incident": 2, "actor": "system"},
     {"plan:7", "incident:2", "actor:system"}),
    ("transfer.created", {"id": 5, "source": "QDN", "destination": "KL"},
     {"transfer:5", "warehouse:QDN", "warehouse:KL"}),
    ("road.changed", {"events": [{"edge": "e48"}, {"edge": "e2"}]}, {"edge:e48", "edge:e2"}),
    ("road.changed", {"kind": "replace"}, {"roads:network"}),
    ("incident.escalated", {"id": 3, "from": "IV", "to": "III"}, {"incident:3"}),
])
def test_what_an_event_is_about(kind, data, expected):
    assert event_log.entities(kind, data) == expected
