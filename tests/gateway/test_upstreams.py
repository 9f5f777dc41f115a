"""Several instances of one service (shared.client.Upstreams, used by the gateway and by the
allocation service's client to the inventory): round robin, an open circuit skipped, and a call
that could not reach an instance tried once more on the next only where that is safe."""

from __future__ import annotations

import itertools

import pytest
from flask import Flask, request
from gateway_helpers import Live, closed_port_url, issue
from harness import SECRET

from shared import auth
from shared.client import Reply, ServiceClient
from shared.errors import Unavailable, UpstreamTimeout

CALLER = auth.Identity("allocation-service", "service")


class FakeTransport:
    """One instance: answers 200 naming itself, or refuses, or times out (`mode`)."""

    def __init__(self, name: str, log: list):
        self.name, self.log, self.mode = name, log, "answer"

    def request(self, method, path, body, headers, timeout) -> Reply:
        self.log.append((self.name, method, path, dict(headers)))
        if self.mode == "refuse":
            raise ConnectionError("refused")
        if self.mode == "timeout":
            raise TimeoutError("read timed out")
        return Reply(200, {"X-Served-By": self.name}, self.name.encode())

    def close(self) -> None:
        pass


def client_of(count: int, **options) -> tuple[ServiceClient, list[FakeTransport], list]:
    """A client over `count` fake instances a, b, c ...; the shared log of what each got."""
    log: list = []
    client = ServiceClient("inventory", [f"http://inv-{n}:8000" for n in range(count)], SECRET,
                           **options)
    client.upstreams.turn = itertools.count()  # from the first instance (else at random)
    fakes = []
    for n, instance in enumerate(client.instances):
        instance.transport.close()
        instance.transport = FakeTransport("abcdefgh"[n], log)
        fakes.append(instance.transport)
    return client, fakes, log


def served(log: list) -> list[str]:
    return [name for name, *_ in log]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def with_clock(client: ServiceClient) -> Clock:
    clock = Clock()
    for instance in client.instances:
        instance.breaker.clock = clock
    return clock


# --- round robin ---------------------------------------------------------------------------

def test_calls_go_to_the_instances_in_turn():
    client, _, log = client_of(3)
    answers = [client.forward(method, "/api/v1/stock", CALLER).data.decode()
               for method in ("GET", "POST", "GET", "PATCH", "GET", "DELETE")]
    assert answers == ["a", "b", "c", "a", "b", "c"]
    assert served(log) == answers  # one send each: nothing failed


def test_each_process_starts_at_an_instance_of_its_own():
    starts = set()
    for _ in range(40):
        client = ServiceClient("inventory", [f"http://inv-{n}:8000" for n in range(4)], SECRET)
        starts.add(client.upstreams.pick().url)
        client.close()
    assert len(starts) > 1  # not every worker's first call to the first instance


def test_one_url_is_one_instance_as_before():
    client, (only,), log = client_of(1)
    assert client.retries == 0
    assert [client.fetch("/readyz").data for _ in range(3)] == [b"a"] * 3
    only.mode = "refuse"
    with pytest.raises(Unavailable) as down:
        client.call("GET", "/api/v1/stock", CALLER)
    assert down.value.extra == {"service": "inventory"}
    assert served(log) == ["a"] * 4  # not tried again: no other instance, no retries asked


# --- what is tried again, and where ----------------------------------------------------------

@pytest.mark.parametrize("method,key", [("GET", None), ("HEAD", None), ("POST", "k-1"),
                                        ("PUT", "k-2"), ("DELETE", "k-3")])
def test_a_refused_call_that_is_safe_to_repeat_goes_once_to_the_next_instance(method, key):
    client, (a, _), log = client_of(2)
    a.mode = "refuse"
    headers = {"Idempotency-Key": key} if key else {}
    reply = client.forward(method, "/api/v1/movements", CALLER, b"{}", headers)
    assert reply.data == b"b"
    assert served(log) == ["a", "b"]
    (_, _, _, first), (_, _, _, again) = log
    assert again == first  # the same signed call (same nonce): the service answers it once


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_write_without_an_idempotency_key_is_never_sent_again(method):
    client, (a, _), log = client_of(2, retries=3)
    a.mode = "refuse"
    with pytest.raises(Unavailable):
        client.forward(method, "/api/v1/movements", CALLER, b"{}")
    assert served(log) == ["a"]  # it may have reached the service: b never sees it


def test_a_timeout_is_not_tried_again_anywhere():
    client, (a, _), log = client_of(2, retries=2)
    a.mode = "timeout"
    with pytest.raises(UpstreamTimeout) as slow:
        client.forward("GET", "/api/v1/stock", CALLER)
    assert slow.value.extra == {"service": "inventory"}
    assert served(log) == ["a"]


def test_retried_once_by_default_then_the_service_is_unreachable():
    client, fakes, log = client_of(3)
    assert client.retries == 1
    for fake in fakes:
        fake.mode = "refuse"
    with pytest.raises(Unavailable) as down:
        client.forward("GET", "/api/v1/stock", CALLER)
    assert down.value.extra == {"service": "inventory"}
    assert served(log) == ["a", "b"]


def test_more_retries_go_round_the_instances():
    client, (a, b), log = client_of(2, retries=2)
    a.mode = b.mode = "refuse"
    with pytest.raises(Unavailable):
        client.forward("GET", "/api/v1/stock", CALLER, headers={"Idempotency-Key": "k"})
    assert served(log) == ["a", "b", "a"]


# --- breakers --------------------------------------------------------------------------------

def test_an_instance_whose_circuit_is_open_is_skipped_until_a_trial_finds_it_back():
    client, (a, _), log = client_of(2, breaker=(2, 10.0))
    clock = with_clock(client)
    a.mode = "refuse"
    for _ in range(4):  # a refuses, each call then answered by b
        assert client.forward("GET", "/api/v1/stock", CALLER).data == b"b"
    states = [instance.breaker.state for instance in client.instances]
    assert states == ["open", "closed"]
    log.clear()
    assert [client.forward("GET", "/x", CALLER).data for _ in range(4)] == [b"b"] * 4
    assert served(log) == ["b"] * 4  # a is not even tried
    a.mode = "answer"
    clock.now += 10.5  # half-open: one trial goes to a, and a answers
    assert sorted(client.forward("GET", "/x", CALLER).data for _ in range(2)) == [b"a", b"b"]
    assert [instance.breaker.state for instance in client.instances] == ["closed", "closed"]
    log.clear()
    assert sorted(client.forward("GET", "/x", CALLER).data for _ in range(4)) == \
        [b"a", b"a", b"b", b"b"]


def test_a_write_without_a_key_is_refused_by_its_instance_but_the_next_call_skips_it():
    client, (a, _), log = client_of(2, breaker=(1, 10.0))
    with_clock(client)
    a.mode = "refuse"
    with pytest.raises(Unavailable):
        client.forward("POST", "/api/v1/movements", CALLER, b"{}")  # a: refused, opened
    assert client.forward("POST", "/api/v1/movements", CALLER, b"{}").data == b"b"
    assert client.forward("POST", "/api/v1/movements", CALLER, b"{}").data == b"b"
    assert served(log) == ["a", "b", "b"]


def test_every_circuit_open_is_a_503_at_once_naming_the_service():
    client, fakes, log = client_of(2, breaker=(1, 10.0), retries=0)
    clock = with_clock(client)
    for fake in fakes:
        fake.mode = "refuse"
    for _ in range(2):
        with pytest.raises(Unavailable):
            client.forward("POST", "/api/v1/movements", CALLER, b"{}")
    log.clear()
    clock.now += 3
    with pytest.raises(Unavailable) as cut_off:
        client.forward("GET", "/api/v1/stock", CALLER)
    assert log == []
    assert cut_off.value.extra == {"service": "inventory", "circuit": "open"}
    assert cut_off.value.headers == {"Retry-After": "7"}
    assert "each of its 2 instances failed 1 times in a row" in cut_off.value.detail


def test_a_slow_502_or_504_counts_against_its_instance_only():
    client, (a, _), _ = client_of(2, breaker=(1, 10.0))
    with_clock(client)
    a.request = lambda *args: Reply(502, {}, b"bad gateway")
    assert client.forward("GET", "/x", CALLER).status == 502  # answered, whatever its status
    assert [instance.breaker.state for instance in client.instances] == ["open", "closed"]
    assert client.forward("GET", "/x", CALLER).data == b"b"


def test_the_allocation_services_client_has_breakers_only_with_several_inventories(tmp_path):
    from allocation_svc import inventory_service
    from shared.config import load_settings

    def client(urls: str) -> ServiceClient:
        made = inventory_service(load_settings("allocation", {
            "EMSUPPLY_SECRET": SECRET, "EMSUPPLY_INVENTORY_URL": urls}, data_dir=tmp_path))
        made.close()
        return made

    one = client("http://inv:8001")
    assert [i.breaker for i in one.instances] == [None] and one.retries == 0
    two = client("http://inv-1:8001,http://inv-2:8001")
    assert [i.url for i in two.instances] == ["http://inv-1:8001", "http://inv-2:8001"]
    assert all(i.breaker is not None for i in two.instances) and two.retries == 1


# --- through the gateway, over real sockets ---------------------------------------------------

def named_service(name: str, secret: str) -> tuple[Live, list]:
    """A service instance that checks the gateway's signature and says who it is."""
    calls: list = []
    app = Flask(name)

    @app.route("/api/v1/<path:rest>", methods=["GET", "POST"])
    def anything(rest):
        auth.verify(secret, request.headers, request.method, request.full_path.rstrip("?"),
                    request.get_data())
        calls.append((request.method, request.headers.get("Idempotency-Key")))
        return {"instance": name}

    @app.get("/readyz")
    def ready():
        return {"status": "ready"}
    return Live(app), calls


@pytest.fixture
def two_and_a_dead_one(suite_secret):
    first, first_calls = named_service("first", suite_secret)
    second, second_calls = named_service("second", suite_secret)
    dead = closed_port_url()
    yield [first.url, dead, second.url], {"first": first_calls, "second": second_calls}
    first.stop()
    second.stop()


def test_the_gateway_balances_skips_the_dead_and_reports_each_instance(make_gateway,
                                                                      two_and_a_dead_one):
    urls, calls = two_and_a_dead_one
    app = make_gateway(inventory_url=",".join(urls), breaker_failures=2, breaker_reset_s=60)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {issue(app, 'admin')}"}
    answered = [client.get("/api/v1/stock", headers=headers) for _ in range(12)]
    assert {a.status_code for a in answered} == {200}  # the dead one: refused, tried on the next
    assert len(calls["first"]) + len(calls["second"]) == 12
    assert len(calls["first"]) >= 4 and len(calls["second"]) >= 4
    upstream = app.extensions["gateway"].upstreams["inventory"]
    assert [b.state for b in upstream.breakers] == ["closed", "open", "closed"]
    # a keyed write goes on; an unkeyed one was never sent to the dead one now its circuit is open
    keyed = client.post("/api/v1/movements", json={}, headers={**headers,
                                                               "Idempotency-Key": "m-1"})
    plain = client.post("/api/v1/movements", json={}, headers=headers)
    assert keyed.status_code == plain.status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    report = ready.get_json()["checks"]["inventory"]
    assert [(e["url"], e["ready"], e["circuit"]) for e in report] == [
        (urls[0], True, "closed"), (urls[1], False, "open"), (urls[2], True, "closed")]
    assert "unreachable" in report[1]["detail"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'emsupply_gateway_circuit_open{service="inventory"} 1.0' in metrics


def test_the_gateway_is_not_ready_when_no_instance_is(make_gateway):
    dead = [closed_port_url(), closed_port_url()]
    app = make_gateway(inventory_url=",".join(dead))
    ready = app.test_client().get("/readyz")
    assert ready.status_code == 503
    failure = ready.get_json()["failures"]["inventory"]
    assert failure.startswith("no instance is ready (") and all(url in failure for url in dead)
    assert [e["ready"] for e in ready.get_json()["checks"]["inventory"]] == [False, False]
