"""The signed identity at its edges (issue 13, items 1 and 2): any token name travels and is
recorded exactly; a timestamp no clock can hold is a 401, never a 500."""

from __future__ import annotations

import json

import pytest
from factories import build_tree, receive
from gateway_helpers import issue
from harness import SECRET, Bearer

from shared import auth

NAMES = ["李伟", "night\nshift", "50%OFF %41 ü"]


@pytest.mark.parametrize("name", NAMES)
def test_a_token_of_any_name_works_and_is_recorded_exactly(gateway_app, name):
    caller = Bearer(gateway_app.test_client(), issue(gateway_app, "admin", name=name))
    build_tree(caller)
    receipt = receive(caller, "KL", "TENT", 3)
    assert receipt["lines"][0]["actor"] == name
    card = caller.get("/api/v1/movements?warehouse=KL").get_json()["items"]
    assert [line["actor"] for line in card] == [name]


def far_future(path: str, body: bytes) -> dict[str, str]:
    headers = auth.sign(SECRET, auth.Identity("relay:x", "service"), "POST", path, body)
    return {**headers, auth.H_TIMESTAMP: "9" * 400}


def test_a_timestamp_of_400_digits_is_401_on_every_service_and_the_event_intake(
        inventory_app, allocation_app, gateway_app):
    body = json.dumps({"source": "inventory", "events": []}).encode()
    calls = [(inventory_app, "/api/v1/movements"), (allocation_app, "/api/v1/incidents"),
             (gateway_app, "/internal/v1/events")]
    for app, path in calls:
        answer = app.test_client().post(path, data=body, headers=far_future(path, body),
                                        content_type="application/json")
        assert answer.status_code == 401, (path, answer.get_data(as_text=True))
        assert answer.mimetype == "application/problem+json"
        assert "timestamp" in answer.get_json()["detail"]
