"""A read-only integration (issue 11, item 5): made with `--read-only`, it reads everything an
integration reads, and the gateway refuses its writes itself, before any service sees them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from factories import build_tree, receive
from harness import Bearer

from emsupply.cli import main
from gateway import tokens
from shared.errors import InvalidInput


def read_only_integration(gateway_app) -> Bearer:
    with gateway_app.extensions["gateway"].db.unit_of_work() as session:
        issued = tokens.create(session, "integration", name="command-centre-mirror",
                               read_only=True)
    return Bearer(gateway_app.test_client(), issued.token)


def test_the_cli_makes_and_lists_a_read_only_integration(tmp_path):
    runner = CliRunner()
    env = {"EMSUPPLY_SECRET": "test-secret-0123456789abcdef", "EMSUPPLY_GATEWAY_DB": ""}
    made = runner.invoke(main, ["token", "create", "--role", "integration", "--read-only",
                                "--data-dir", str(tmp_path)], env=env)
    assert made.exit_code == 0, made.output
    listed = runner.invoke(main, ["token", "list", "--json", "--data-dir", str(tmp_path)],
                           env=env)
    assert json.loads(listed.stdout)["read_only"] is True
    refused = runner.invoke(main, ["token", "create", "--role", "viewer", "--read-only",
                                   "--data-dir", str(tmp_path)], env=env)
    assert refused.exit_code != 0 and "read-only" in refused.output


@pytest.mark.parametrize("role", ["admin", "commander", "viewer"])
def test_only_an_integration_is_made_read_only(gateway_db, role):
    with gateway_db.unit_of_work() as session, pytest.raises(InvalidInput, match="read-only"):
        tokens.create(session, role, read_only=True)


@pytest.mark.parametrize("method,path,body", [
    ("POST", "/api/v1/reservations", {"lines": [
        {"warehouse": "KL-T01", "item": "QUILT", "quantity": 1}]}),
    ("POST", "/api/v1/reservations/1/release", {}),
    ("POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"],
                                  "secret": "s" * 20}),
    ("POST", "/api/v1/incidents", {"type": "flood", "sites": [{"warehouse": "KL-T01"}]}),
    ("POST", "/api/v1/roads/events", {"events": [{"edge": "e1", "status": "closed"}]}),
    ("PATCH", "/api/v1/incidents/1", {"level": "III"}),
    ("DELETE", "/api/v1/webhooks/1", None),
])
def test_its_writes_are_refused_at_the_gateway(gateway_app, admin, method, path, body):
    build_tree(admin)
    receive(admin, "KL-T01", "QUILT", 10)
    mirror = read_only_integration(gateway_app)
    response = mirror.call(method, path, body)
    assert response.status_code == 403, response.get_json()
    problem = response.get_json()
    assert response.mimetype == "application/problem+json" and problem["request_id"]
    assert "read-only" in problem["detail"]
    said = mirror.call(method, path, body, headers={"Accept-Language": "zh"}).get_json()
    assert "只读" in said["detail"]
    held = admin.get("/api/v1/stock?warehouse=KL-T01&item=QUILT").get_json()["items"][0]
    assert held["reserved"] == 0  # nothing got through to the inventory


def test_it_reads_what_an_integration_reads(gateway_app, admin):
    build_tree(admin)
    mirror = read_only_integration(gateway_app)
    for path in ("/api/v1/warehouses/KL-T01", "/api/v1/stock?warehouse=KL&subtree=true",
                 "/api/v1/events", "/api/v1/webhooks"):
        response = mirror.get(path)
        assert response.status_code == 200, (path, response.get_json())


def test_a_full_integration_still_writes(gateway_app, admin, as_role):
    build_tree(admin)
    receive(admin, "KL-T01", "QUILT", 10)
    held = as_role("integration").post("/api/v1/reservations", {"lines": [
        {"warehouse": "KL-T01", "item": "QUILT", "quantity": 1}]})
    assert held.status_code == 201, held.get_json()
