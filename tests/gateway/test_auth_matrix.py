"""Who may do what, end to end: bearer token at the gateway, signed identity to the service,
role and scope decided by the service."""

from __future__ import annotations

import uuid

import pytest
import requests
from factories import build_tree, receive, roads_geojson
from harness import Bearer

from allocation_svc.permissions import PERMISSIONS as ALLOCATION
from gateway.permissions import PERMISSIONS as GATEWAY
from gateway.permissions import READ_ONLY_METHODS
from inventory_svc.permissions import PERMISSIONS as INVENTORY
from shared import auth

ROLES = auth.TOKEN_ROLES
OK, NO = "allowed", "refused"


def everyone(**exceptions):
    return {role: exceptions.get(role, OK) for role in ROLES}


def only(*allowed):
    return {role: OK if role in allowed else NO for role in ROLES}


def per(table: dict[str, tuple[str, ...]], action: str):
    """Who the service's own permission table lets do `action` (the table the code obeys)."""
    return only(*table[action])


def _code():
    return "W" + uuid.uuid4().hex[:8]


# (method, path, body-maker, who) for representative calls of each resource. The keeper's and
# the reporter's tokens are scoped to KL-T01 (a township), and every write below touches that
# subtree.
CALLS = [
    ("GET", "/api/v1/warehouses?level=village", None, everyone()),
    ("GET", "/api/v1/warehouses/KL-T01", None, everyone()),
    ("POST", "/api/v1/warehouses", lambda: {"code": _code(), "name": "New", "level": "village",
                                            "parent": "KL-T01"},
     per(INVENTORY, "warehouses.write")),
    ("PATCH", "/api/v1/warehouses/KL-T01-V01", lambda: {"name": "Renamed"},
     per(INVENTORY, "warehouses.write")),
    ("GET", "/api/v1/items", None, everyone()),
    ("POST", "/api/v1/items", lambda: {"sku": _code(), "name": "Rope", "unit": "piece"},
     per(INVENTORY, "items.write")),
    ("GET", "/api/v1/stock?warehouse=KL&subtree=true", None, everyone()),
    ("GET", "/api/v1/stock/summary?by=level", None, everyone()),
    ("GET", "/api/v1/movements?warehouse=KL-T01-V01", None, everyone()),
    ("POST", "/api/v1/movements", lambda: {"warehouse": "KL-T01-V01", "item": "TENT",
                                           "kind": "receipt", "quantity": 2},
     per(INVENTORY, "stock.move")),
    ("POST", "/api/v1/movements/batch", lambda: {"lines": [
        {"warehouse": "KL-T01-V02", "item": "TENT", "kind": "receipt", "quantity": 1}]},
     per(INVENTORY, "stock.move")),
    ("POST", "/api/v1/stocktakes", lambda: {"warehouse": "KL-T01-V01",
                                            "counts": [{"item": "QUILT", "counted": 3}]},
     per(INVENTORY, "stocktake")),
    ("PUT", "/api/v1/warehouses/KL-T01/levels", lambda: {"levels": [
        {"item": "TENT", "min": 1, "target": 5}]}, per(INVENTORY, "levels.write")),
    ("GET", "/api/v1/stock/lots?warehouse=KL-T01&item=TENT", None, everyone()),
    ("GET", "/api/v1/stock/expiring?within_days=30", None, everyone()),
    ("POST", "/api/v1/stock/write-offs", lambda: {"warehouse": "KL-T01", "item": "TENT"},
     per(INVENTORY, "stock.write_off")),
    ("POST", "/api/v1/transfers", lambda: {"source": "KL-T01", "destination": "KL-T01-V01",
                                           "lines": [{"item": "TENT", "quantity": 1}]},
     per(INVENTORY, "transfers.create")),
    ("POST", "/api/v1/reservations", lambda: {"lines": [
        {"warehouse": "KL-T01", "item": "QUILT", "quantity": 1}]},
     per(INVENTORY, "reservations.create")),
    ("GET", "/api/v1/events", None, per(GATEWAY, "events.read")),
    ("GET", "/api/v1/webhooks", None, per(GATEWAY, "webhooks.read")),
    ("POST", "/api/v1/webhooks", lambda: {"url": "http://127.0.0.1:9/hook", "events": ["*"],
                                          "secret": "s" * 20}, per(GATEWAY, "webhooks.write")),
]


@pytest.fixture
def network(admin):
    build_tree(admin)
    receive(admin, "KL-T01", "TENT", 1000)
    receive(admin, "KL-T01", "QUILT", 1000)
    return admin


def scope_of(role: str) -> tuple[str, ...]:
    return ("KL-T01",) if role in auth.PLACED_ROLES else ()


def outcome_of(role: str, response) -> str:
    assert response.status_code not in (401, 500, 502, 503, 504), (role, response.get_json())
    if response.status_code != 403:
        assert response.status_code < 400, (role, response.get_json())
        return OK
    problem = response.get_json()
    assert response.mimetype == "application/problem+json"
    assert problem["status"] == 403 and problem["request_id"]
    return NO


@pytest.mark.parametrize("method,path,body,who", CALLS,
                         ids=[f"{m} {p.split('?')[0]}" for m, p, _, _ in CALLS])
def test_every_role_against_each_resource(network, as_role, method, path, body, who):
    callers = {role: as_role(role, *scope_of(role)) for role in ROLES}
    outcome = {role: outcome_of(role, caller.call(method, path, body() if body else None))
               for role, caller in callers.items()}
    assert outcome == who


@pytest.mark.parametrize("method,path,body,who", CALLS,
                         ids=[f"{m} {p.split('?')[0]}" for m, p, _, _ in CALLS])
def test_a_read_only_integration_reads_as_an_integration_and_writes_nothing(
        network, gateway_app, method, path, body, who):
    from gateway import tokens

    with gateway_app.extensions["gateway"].db.unit_of_work() as session:
        token = tokens.create(session, "integration", read_only=True).token
    caller = Bearer(gateway_app.test_client(), token)
    expected = who["integration"] if method in READ_ONLY_METHODS else NO
    assert outcome_of("integration", caller.call(method, path, body() if body else None)) \
        == expected


@pytest.fixture
def suite(make_gateway, live_inventory, live_allocation):
    """A gateway in front of both services, the small tree with its roads, stock at KL."""
    from gateway import tokens

    app = make_gateway(inventory_url=live_inventory.url, allocation_url=live_allocation.url)
    client = app.test_client()

    def caller(role: str, *warehouses: str, read_only: bool = False) -> Bearer:
        with app.extensions["gateway"].db.unit_of_work() as session:
            return Bearer(client, tokens.create(session, role, warehouses, None, read_only).token)

    admin = caller("admin")
    build_tree(admin, with_roads=True)
    assert admin.put("/api/v1/roads", roads_geojson()).status_code == 200
    receive(admin, "KL", "TENT", 100)
    return caller


def incident_at(suite, warehouse: str) -> int:
    declared = suite("admin").post("/api/v1/incidents", {
        "type": "flood", "sites": [{"id": "S1", "warehouse": warehouse, "population": 10}]})
    assert declared.status_code == 201, declared.get_json()
    return declared.get_json()["id"]


# Allocation calls, each role with its usual token (keeper and reporter at KL-T01, whose
# township seat is an end of e2, e3, e4 and e8); the incident is in Kaili (KL-T01-V01).
ALLOCATION_CALLS = [
    ("GET", "/api/v1/roads", None, everyone()),
    ("GET", "/api/v1/incidents/{incident}", None, everyone()),
    ("POST", "/api/v1/incidents", lambda: {"type": "flood", "sites": [
        {"warehouse": "KL-T01-V01"}]}, per(ALLOCATION, "incidents.write")),
    ("PATCH", "/api/v1/incidents/{incident}", lambda: {"title": _code()},
     per(ALLOCATION, "incidents.write")),
    ("POST", "/api/v1/incidents/{incident}/allocations", lambda: {"demands": [
        {"site": "S1", "item": "TENT", "quantity": 1}]}, per(ALLOCATION, "plans.write")),
    ("POST", "/api/v1/roads/events", lambda: {"events": [
        {"edge": "e3", "status": "degraded", "speed_factor": 0.5, "reason": "mud slide"}]},
     per(ALLOCATION, "roads.report")),
    ("POST", "/api/v1/replenishments", lambda: {"items": ["TENT"]},
     per(ALLOCATION, "replenishment.write")),
]


@pytest.mark.parametrize("method,path,body,who", ALLOCATION_CALLS,
                         ids=[f"{m} {p}" for m, p, _, _ in ALLOCATION_CALLS])
def test_every_role_against_each_allocation_resource(suite, method, path, body, who):
    path = path.format(incident=incident_at(suite, "KL-T01-V01"))
    outcome = {role: outcome_of(role, suite(role, *scope_of(role)).call(
        method, path, body() if body else None)) for role in ROLES}
    assert outcome == who
    read_only = suite("integration", read_only=True)
    expected = who["integration"] if method in READ_ONLY_METHODS else NO
    assert outcome_of("integration", read_only.call(method, path, body() if body else None)) \
        == expected


@pytest.mark.parametrize("scope,site,expected", [
    (("KL",), "KL-T01-V01", OK),  # a village of its county
    (("KL",), "KL", OK),  # the county depot itself
    (("KL",), "LP", NO),  # the next county
    (("KL",), "QDN", NO),  # the prefecture depot is above it
    (("LP",), "KL-T01-V01", NO),
    (("KL-T01",), "KL-T01-V02", OK),  # a commander bound to a township
    (("KL-T01",), "KL-T02-V01", NO),
    ((), "LP", OK),  # an unscoped commander is prefecture-wide
])
def test_a_county_commander_acts_on_incidents_in_its_county(suite, scope, site, expected):
    commander = suite("commander", *scope)
    declared = commander.post("/api/v1/incidents", {"type": "flood", "sites": [
        {"id": "S1", "warehouse": site, "population": 10}]})
    assert outcome_of("commander", declared) == expected
    incident = incident_at(suite, site)
    planned = commander.post(f"/api/v1/incidents/{incident}/allocations", {
        "demands": [{"site": "S1", "item": "TENT", "quantity": 1}]})
    assert outcome_of("commander", planned) == expected
    assert commander.get(f"/api/v1/incidents/{incident}").status_code == 200  # reads: all


@pytest.mark.parametrize("role,scope,edge,expected", [
    ("reporter", ("KL-T01-V01",), "e3", OK),  # its own village road
    ("reporter", ("KL-T01-V01",), "e2", OK),  # an end (KL-T01) 3 km away
    ("reporter", ("KL-T01-V01",), "e9", NO),  # ends 8 and 13 km away
    ("reporter", ("KL-T01-V01",), "e7", NO),  # the expressway to Liping
    ("keeper", ("KL-T02",), "e9", OK),
    ("keeper", ("KL-T02",), "e3", NO),
    ("reporter", ("KL-T01-V01", "LP"), "e7", OK),  # several depots on one token
    ("commander", ("KL",), "e7", OK),  # a county commander reports anywhere
])
def test_keepers_and_reporters_report_roads_near_their_depots(suite, role, scope, edge,
                                                              expected):
    reported = suite(role, *scope).post("/api/v1/roads/events", {"events": [
        {"edge": edge, "status": "closed", "reason": "landslide"}]})
    assert outcome_of(role, reported) == expected
    if expected == NO:
        assert edge in reported.get_json()["detail"]


@pytest.mark.parametrize("scope,warehouse,expected", [
    (("KL-T01-V01",), "KL-T01-V01", 201),  # own village
    (("KL-T01-V01",), "KL-T01-V02", 403),  # the neighbouring village
    (("KL-T01-V01",), "KL-T01", 403),  # its township is above it
    (("KL-T01",), "KL-T01", 201),  # scoped to the township: the township itself
    (("KL-T01",), "KL-T01-V02", 201),  # and its subtree
    (("KL-T01",), "KL-T02-V01", 403),  # but not the next township's villages
    (("KL-T01-V01", "KL-T02"), "KL-T02-V01", 201),  # several warehouses on one token
])
def test_keeper_scope(network, as_role, scope, warehouse, expected):
    keeper = as_role("keeper", *scope)
    response = keeper.post("/api/v1/movements", {"warehouse": warehouse, "item": "TENT",
                                                 "kind": "receipt", "quantity": 1})
    assert response.status_code == expected, response.get_json()
    if expected == 201:
        assert response.get_json()["lines"][0]["actor"].startswith("keeper-")


def test_keeper_receives_only_transfers_into_scope(network, as_role):
    sent = network.post("/api/v1/transfers", {"source": "KL-T01", "destination": "KL-T01-V01",
                                              "lines": [{"item": "TENT", "quantity": 5}]})
    assert sent.status_code == 201, sent.get_json()
    path = f"/api/v1/transfers/{sent.get_json()['id']}/receive"
    assert as_role("keeper", "KL-T01-V02").post(path, {}).status_code == 403
    assert as_role("keeper", "KL-T01-V01").post(path, {}).status_code == 200


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-token",
    "Bearer ems_" + "x" * 43, "bearer ems_", "Token ems_abc", "Bearer " + "ems_" + "y" * 400,
])
def test_missing_or_malformed_token_is_401(gateway_app, header):
    client = gateway_app.test_client()
    headers = {} if header is None else {"Authorization": header}
    for path in ("/api/v1/warehouses", "/api/v1/events", "/api/v1/roads"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401, (path, header)
        problem = response.get_json()
        assert response.mimetype == "application/problem+json"
        assert problem["status"] == 401 and problem["request_id"] == response.headers[
            "X-Request-ID"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_401(gateway_app):
    from gateway import tokens

    client = gateway_app.test_client()
    token = tokens_issue = None
    with gateway_app.extensions["gateway"].db.unit_of_work() as session:
        tokens_issue = tokens.create(session, "viewer", name="to-revoke")
        token = tokens_issue.token
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/warehouses", headers=headers).status_code == 200
    with gateway_app.extensions["gateway"].db.unit_of_work() as session:
        tokens.revoke(session, str(tokens_issue.id))
    response = client.get("/api/v1/warehouses", headers=headers)
    assert response.status_code == 401
    assert "revoked" in response.get_json()["detail"]


def test_the_gateway_does_not_pass_on_identity_headers_of_the_caller(network, as_role):
    """A viewer cannot make itself admin by sending the identity headers itself."""
    viewer = as_role("viewer")
    forged = auth.sign("wrong-secret-0123456789", auth.Identity("x", "admin"), "POST",
                       "/api/v1/items")
    response = viewer.post("/api/v1/items", {"sku": "ROPE", "name": "Rope", "unit": "m"},
                           headers=forged)
    assert response.status_code == 403


def test_a_service_called_directly_without_the_gateway_signature_is_401(live_inventory,
                                                                        inventory_app):
    plain = requests.get(live_inventory.url + "/api/v1/warehouses", timeout=5)
    assert plain.status_code == 401
    assert plain.headers["Content-Type"] == "application/problem+json"
    body = b'{"sku":"ROPE","name":"Rope","unit":"m"}'
    headers = auth.sign("not-the-suite-secret-000", auth.Identity("x", "admin"), "POST",
                        "/api/v1/items", body)
    forged = requests.post(live_inventory.url + "/api/v1/items", data=body, timeout=5,
                           headers={**headers, "Content-Type": "application/json"})
    assert forged.status_code == 401
    secret = inventory_app.extensions["emsupply"].settings.secret
    replayed = auth.sign(secret, auth.Identity("x", "admin"), "GET", "/api/v1/items")
    other_call = requests.get(live_inventory.url + "/api/v1/warehouses", headers=replayed,
                              timeout=5)
    assert other_call.status_code == 401  # a signature is good for its own call only
