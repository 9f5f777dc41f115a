"""The CLI's HTTP client of the suite (emsupply.suite.HttpSuite): a 429 is waited out as its
Retry-After says; a 503 is sent again only when that is safe (a read, a PUT, a call with an
Idempotency-Key); answers carry their headers."""

from __future__ import annotations

import threading

import pytest
from flask import Flask, request
from werkzeug.serving import make_server

from emsupply.suite import ApiError, HttpSuite


@pytest.fixture
def server():
    app = Flask("fake-gateway")
    seen: list[tuple[str, str, str | None]] = []
    script: dict[str, list[tuple[int, dict]]] = {}

    @app.route("/api/v1/<path:rest>", methods=["GET", "POST", "PUT"])
    def answer(rest):
        seen.append((request.method, rest, request.headers.get("Authorization")))
        status, headers = (script.get(rest) or [(200, {})]).pop(0)
        return {"rest": rest}, status, headers

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", seen, script
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_rate_limited_calls_wait_and_go_again(server):
    url, seen, script = server
    script["items"] = [(429, {"Retry-After": "0"}), (429, {"Retry-After": "0"}), (201, {})]
    client = HttpSuite(url, "tok")
    assert client.call("POST", "/api/v1/items", {"sku": "X"}) == {"rest": "items"}
    assert [s[0] for s in seen] == ["POST"] * 3
    assert {s[2] for s in seen} == {"Bearer tok"}


def test_a_503_is_repeated_only_when_safe(server):
    url, seen, script = server
    client = HttpSuite(url, "tok")
    script["incidents"] = [(503, {"Retry-After": "0"}), (201, {})]
    with pytest.raises(ApiError) as failed:
        client.call("POST", "/api/v1/incidents", {})
    assert failed.value.status == 503 and len(seen) == 1
    script["movements"] = [(503, {"Retry-After": "0"}), (201, {"Idempotent-Replayed": "true"})]
    answer = client.request("POST", "/api/v1/movements", {}, {"Idempotency-Key": "k1"})
    assert answer.status == 201 and answer.headers["Idempotent-Replayed"] == "true"
    script["stock"] = [(503, {"Retry-After": "0"}), (200, {})]
    assert client.call("GET", "/api/v1/stock") == {"rest": "stock"}


def test_patience_runs_out(server):
    url, _, script = server
    script["items"] = [(429, {"Retry-After": "0"})] * 50
    client = HttpSuite(url, "tok", patience_s=0.5)
    with pytest.raises(ApiError) as failed:
        client.call("GET", "/api/v1/items")
    assert failed.value.status == 429


def test_an_unreachable_suite_is_an_api_error_not_a_traceback():
    client = HttpSuite("http://127.0.0.1:9", "tok")
    with pytest.raises(ApiError, match="cannot reach"):
        client.call("GET", "/api/v1/items")
