"""One merged OpenAPI document, and /docs served from local assets."""

from __future__ import annotations

import re

from gateway.openapi import merge
from gateway.proxy import owner


def test_merged_document_has_every_public_path(gateway_app):
    client = gateway_app.test_client()
    response = client.get("/api/v1/openapi.json")  # no token needed
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for path in ("/api/v1/warehouses", "/api/v1/warehouses/{code}", "/api/v1/movements",
                 "/api/v1/stock", "/api/v1/transfers", "/api/v1/reservations",
                 "/api/v1/events", "/api/v1/webhooks", "/api/v1/webhooks/{webhook_id}"):
        assert path in paths, path
    assert not [p for p in paths if p.startswith("/internal")]
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    # allocation is down here: the document says so and is served all the same
    assert doc["info"]["x-emsupply-unavailable"] == ["allocation"]
    for path, item in paths.items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            answers = operation["responses"]
            for status in ("401", "403", "429", "503", "504"):
                assert status in answers, (path, method, status)
            if method == "post":
                assert any(p["name"] == "Idempotency-Key" for p in operation["parameters"])
    problem = doc["components"]["responses"]["UNPROCESSABLE_ENTITY"]["content"]
    assert list(problem) == ["application/problem+json"]
    assert "Error" not in doc["components"]["schemas"]
    assert not re.search(r"\\\\Z", str(doc))
    links = paths["/api/v1/warehouses"]["post"]["responses"]["201"]["links"]
    assert any(link["parameters"] == {"code": "$response.body#/code"}
               for link in links.values())


def test_same_named_components_with_other_content_are_renamed():
    own = {"openapi": "3.1.0", "paths": {}, "components": {"schemas": {
        "Thing": {"type": "object", "properties": {"a": {"type": "string"}}}}}}
    inventory = {"paths": {"/api/v1/items": {"get": {"responses": {"200": {
        "description": "OK", "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/Thing"}}}}}}}},
        "components": {"schemas": {"Thing": {"type": "object"}}}}
    doc = merge(own, {"inventory": inventory})
    assert doc["components"]["schemas"]["inventory_Thing"] == {"type": "object"}
    assert doc["components"]["schemas"]["Thing"]["properties"]
    schema = doc["paths"]["/api/v1/items"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/inventory_Thing"}


def test_unrouted_service_paths_are_left_out():
    service = {"paths": {"/api/v1/items": {}, "/api/v1/roads": {}, "/internal/x": {}}}
    doc = merge({"openapi": "3.1.0", "paths": {}}, {"inventory": service})
    assert list(doc["paths"]) == ["/api/v1/items"]


def test_docs_are_served_from_local_assets(gateway_app):
    client = gateway_app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/docs/assets/") for s in sources)
    for source in sources:
        with client.get(source) as asset:
            assert asset.status_code == 200, source
            assert len(asset.data) > 0
    with client.get("/docs/assets/docs-init.js") as asset:
        init = asset.get_data(as_text=True)
    assert "/api/v1/openapi.json" in init and "http" not in init
    assert client.get("/docs/assets/../__init__.py").status_code == 404
    with client.get("/") as console:  # the console (tests/browser drives it)
        assert console.status_code == 200 and 'type="module"' in console.get_data(as_text=True)
        assert "default-src 'self'" in console.headers["Content-Security-Policy"]


def test_every_public_path_of_every_service_is_routed(inventory_app, allocation_app):
    """A service's path the gateway does not route is a 404 to every user and missing from
    the merged document (as /warnings once was)."""
    for name, app in (("inventory", inventory_app), ("allocation", allocation_app)):
        paths = app.test_client().get("/api/v1/openapi.json").get_json()["paths"]
        public = [path for path in paths if path.startswith("/api/v1/")]
        assert public, name
        unrouted = [path for path in public if owner(path) != name
                    and not path.endswith("/openapi.json")]
        assert unrouted == [], (name, unrouted)
