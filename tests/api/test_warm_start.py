"""EMSUPPLY_WARM_START (issue 12): an allocation process started with it loads the road graph
and reads the whole network on a thread of its own before the first plan asks, as a gunicorn
worker of a nation must (20-50 s, longer than the gateway waits for a plan)."""

from __future__ import annotations

import threading

import pytest
from factories import build_network, receive
from harness import SECRET, Caller

from shared.client import InProcessTransport, ServiceClient
from shared.config import ConfigError, load_settings


def warm_thread() -> threading.Thread | None:
    return next((t for t in threading.enumerate() if t.name == "warm-start"), None)


def test_a_process_started_warm_has_the_graph_and_the_network_before_a_plan(
        allocation_db, inventory_app, inv, settings_for):
    from allocation_svc import create_app

    client = ServiceClient("inventory", "http://in-process", SECRET,
                           transport=InProcessTransport(inventory_app))
    cold = create_app(settings_for("allocation", allocation_db.url), allocation_db, client)
    build_network(inv, Caller(cold.test_client()))
    receive(inv, "KL", "TENT", 20)
    assert warm_thread() is None  # off unless asked for
    app = create_app(settings_for("allocation", allocation_db.url, EMSUPPLY_WARM_START="1"),
                     allocation_db, client)
    thread = warm_thread()
    assert thread is not None
    thread.join(timeout=60)
    assert not thread.is_alive()
    plans = app.extensions["allocation"]
    assert plans.graphs.loads == 1
    kept = plans.inventory._network
    assert kept is not None and kept._places is not None and kept._nodes is not None
    assert "KL-T01" in kept.warehouses["code"] and len(kept.stock) > 0


@pytest.mark.parametrize("raw, expected", [("1", True), ("on", True), ("0", False),
                                           ("off", False), ("", False)])
def test_the_setting_is_on_or_off(tmp_path, raw, expected):
    env = {"EMSUPPLY_SECRET": "s" * 16, "EMSUPPLY_WARM_START": raw}
    assert load_settings("allocation", env, tmp_path).warm_start is expected


def test_anything_else_is_refused_with_its_name(tmp_path):
    with pytest.raises(ConfigError, match=r"^EMSUPPLY_WARM_START='maybe' must be true or false"):
        load_settings("allocation", {"EMSUPPLY_SECRET": "s" * 16,
                                     "EMSUPPLY_WARM_START": "maybe"}, tmp_path)
