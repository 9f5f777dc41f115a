"""The one client between services (shared.client): the same answers over urllib3's pool and in
this process, signed calls, and transport failures mapped once, naming the service."""

from __future__ import annotations

import threading
import time

import pytest
from flask import Flask, request
from gateway_helpers import Live, closed_port_url
from harness import SECRET

from shared import auth
from shared.client import InProcessTransport, RemoteError, ServiceClient
from shared.errors import Unauthenticated, Unavailable, UpstreamTimeout

CALLER = auth.Identity("allocation-service", "service")


def depot_app(release: threading.Event | None = None) -> Flask:
    """A service that checks the signature and answers by its path."""
    app = Flask("depot")

    @app.route("/api/v1/<path:rest>", methods=["GET", "POST"])
    def answer(rest):
        try:
            identity = auth.verify(SECRET, request.headers, request.method,
                                   request.full_path.rstrip("?"), request.get_data())
        except Unauthenticated as exc:
            return {"detail": exc.detail}, 401
        if rest == "slow":
            release.wait(5)
        if rest == "refused":
            return {"title": "Conflict", "status": 409, "detail": "short by 3",
                    "shortfalls": [{"item": "TENT", "missing": 3}]}, 409
        if rest == "broken":
            return "oops", 500
        return ({"actor": identity.actor, "query": request.args.get("item"),
                 "body": request.get_json(silent=True)}, 200, {"ETag": '"v7"'})

    @app.get("/readyz")
    def ready():
        return {"status": "ready"}
    return app


@pytest.fixture(params=["pooled", "in-process"])
def depot(request):
    """A ServiceClient in front of the depot app: over a real socket, or in this process."""
    app = depot_app()
    if request.param == "in-process":
        client = ServiceClient("depot", "http://in-process", SECRET,
                               transport=InProcessTransport(app))
        yield client
        client.close()
        return
    live = Live(app)
    client = ServiceClient("depot", live.url, SECRET, read_timeout=5.0)
    yield client
    client.close()
    live.stop()


def test_call_answers_decoded_json_signed_with_the_identity(depot):
    assert depot.call("POST", "/api/v1/stock?item=TENT", CALLER, {"quantity": 2}) == {
        "actor": "allocation-service", "query": "TENT", "body": {"quantity": 2}}


def test_forward_and_fetch_answer_status_headers_and_bytes(depot):
    reply = depot.forward("GET", "/api/v1/items", CALLER)
    assert reply.status == 200
    assert reply.headers["etag"] == '"v7"' and reply.headers["ETag"] == '"v7"'
    assert b'"actor":"allocation-service"' in reply.data.replace(b" ", b"")
    unsigned = depot.fetch("/api/v1/items")
    assert unsigned.status == 401  # the depot takes signed calls only
    assert depot.fetch("/readyz").status == 200


def test_a_problem_is_raised_again_with_its_status_and_fields(depot):
    with pytest.raises(RemoteError) as refused:
        depot.call("POST", "/api/v1/refused", CALLER, {})
    assert refused.value.status == 409
    assert refused.value.extra == {"shortfalls": [{"item": "TENT", "missing": 3}]}
    assert str(refused.value) == "depot: short by 3"


def test_a_server_error_is_unavailable_naming_the_service(depot):
    with pytest.raises(Unavailable) as failed:
        depot.call("GET", "/api/v1/broken", CALLER)
    assert failed.value.extra == {"service": "depot", "upstream_status": 500}


def test_a_refused_connection_is_503_naming_the_service():
    client = ServiceClient("inventory", closed_port_url(), SECRET, connect_timeout=0.5)
    for attempt in (lambda: client.call("GET", "/api/v1/items", CALLER),
                    lambda: client.forward("GET", "/api/v1/items", CALLER),
                    lambda: client.fetch("/readyz")):
        with pytest.raises(Unavailable) as failed:
            attempt()
        assert failed.value.status == 503
        assert failed.value.extra == {"service": "inventory"}
        assert failed.value.detail == "the inventory service is unreachable"
    client.close()


def test_a_late_answer_is_504_naming_the_service():
    release = threading.Event()
    live = Live(depot_app(release))
    client = ServiceClient("allocation", live.url, SECRET, read_timeout=0.3)
    try:
        started = time.perf_counter()
        with pytest.raises(UpstreamTimeout) as late:
            client.call("GET", "/api/v1/slow", CALLER)
        elapsed = time.perf_counter() - started
    finally:
        release.set()
        client.close()
        live.stop()
    assert late.value.status == 504
    assert late.value.extra == {"service": "allocation"}
    assert late.value.detail == "the allocation service did not answer in time"
    assert 0.3 <= elapsed < 2.0


def test_a_base_url_with_a_path_prefixes_every_call():
    outer = Flask("outer")
    outer.wsgi_app = _mounted("/inventory", depot_app().wsgi_app)
    live = Live(outer)
    client = ServiceClient("inventory", live.url + "/inventory/", SECRET)
    try:
        assert client.fetch("/readyz").status == 200
        assert client.call("GET", "/api/v1/items", CALLER)["actor"] == "allocation-service"
    finally:
        client.close()
        live.stop()


def _mounted(prefix: str, app):
    """`app` answering under `prefix` only, as behind a reverse proxy that strips it."""
    def wsgi(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if not path.startswith(prefix + "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"outside the prefix"]
        environ = {**environ, "PATH_INFO": path[len(prefix):]}
        return app(environ, start_response)
    return wsgi
