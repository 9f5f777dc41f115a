"""The plan's life as a table: every action against every status, allowed or refused, written
out here by hand rather than read from the module."""

from __future__ import annotations

import ast
import inspect

import pytest

from allocation_svc import lifecycle
from allocation_svc.lifecycle import (
    ACTIONS,
    CANCEL,
    CANCELLED,
    DELIVER,
    DELIVERED,
    DISPATCH,
    DISPATCHED,
    FAILED,
    HOLD_AGAIN,
    HOLD_OK,
    HOLD_REFUSED,
    LAPSE,
    LAPSED,
    PLANNED,
    RECONCILE,
    REPLAN,
    RESERVING,
    STATUSES,
    STRANDED,
)
from shared.errors import Conflict

ALLOWED = {
    (RESERVING, HOLD_OK): PLANNED,
    (RESERVING, HOLD_REFUSED): FAILED,
    (RESERVING, RECONCILE): FAILED,
    (PLANNED, DISPATCH): DISPATCHED,
    (PLANNED, CANCEL): CANCELLED,
    (PLANNED, REPLAN): PLANNED,
    (DISPATCHED, REPLAN): DISPATCHED,
    (DISPATCHED, DELIVER): DISPATCHED,  # delivered once all arrived: after_deliveries
    (DELIVERED, DELIVER): DELIVERED,
    (PLANNED, LAPSE): LAPSED,  # the hold ran out before dispatch
    (LAPSED, HOLD_AGAIN): PLANNED,
    (LAPSED, CANCEL): CANCELLED,
}
NO_OPS = {
    (DISPATCHED, DISPATCH): DISPATCHED,
    (DELIVERED, DISPATCH): DELIVERED,
    (CANCELLED, CANCEL): CANCELLED,
    (FAILED, CANCEL): FAILED,
    (LAPSED, LAPSE): LAPSED,
    (PLANNED, HOLD_AGAIN): PLANNED,  # a retry of a hold that was made
    (DISPATCHED, HOLD_AGAIN): DISPATCHED,
    (DELIVERED, HOLD_AGAIN): DELIVERED,
}
# The words the API has always answered with its 409.
REFUSED_BECAUSE = {
    DISPATCH: "only a planned plan is dispatched",
    CANCEL: "its stock has left the depots",
    DELIVER: "only dispatched shipments arrive",
    REPLAN: "only planned or dispatched plans are re-planned",
    HOLD_OK: "only a plan being reserved has its hold settled",
    HOLD_REFUSED: "only a plan being reserved has its hold settled",
    RECONCILE: "only a plan being reserved has its hold settled",
    LAPSE: "only a planned plan's hold lapses",
    HOLD_AGAIN: "only a plan whose hold lapsed is held again",
}
PAIRS = [(status, action) for status in STATUSES for action in ACTIONS]


def test_the_statuses_and_actions_are_the_eight_and_nine_named():
    assert set(STATUSES) == {"reserving", "planned", "dispatched", "delivered", "cancelled",
                             "failed", "stranded", "lapsed"}
    assert len(set(ACTIONS)) == 9


@pytest.mark.parametrize("status,action", PAIRS, ids=[f"{s}-{a}" for s, a in PAIRS])
def test_every_action_from_every_status(status, action):
    expected = ALLOWED.get((status, action), NO_OPS.get((status, action)))
    if expected is not None:
        assert lifecycle.next_status(status, action, 7) == expected
        assert lifecycle.already_done(status, action) == ((status, action) in NO_OPS)
        return
    with pytest.raises(Conflict) as refused:
        lifecycle.next_status(status, action, 7)
    assert refused.value.status == 409
    assert refused.value.detail == f"plan 7 is {status}; {REFUSED_BECAUSE[action]}"
    assert not lifecycle.allowed(status, action)
    assert not lifecycle.already_done(status, action)


def test_a_second_dispatch_or_cancel_is_done_already_not_refused():
    assert lifecycle.already_done(DISPATCHED, DISPATCH)
    assert lifecycle.already_done(CANCELLED, CANCEL)
    assert not lifecycle.already_done(PLANNED, DISPATCH)
    assert not lifecycle.already_done(DISPATCHED, CANCEL)


def test_shipments_move_with_their_plan_unless_stranded_or_arrived():
    assert lifecycle.shipment_status(RESERVING, RESERVING, PLANNED) == PLANNED
    assert lifecycle.shipment_status(RESERVING, RESERVING, FAILED) == FAILED
    assert lifecycle.shipment_status(PLANNED, PLANNED, DISPATCHED) == DISPATCHED
    assert lifecycle.shipment_status(PLANNED, PLANNED, CANCELLED) == CANCELLED
    assert lifecycle.shipment_status(STRANDED, PLANNED, DISPATCHED) == STRANDED
    assert lifecycle.shipment_status(STRANDED, PLANNED, CANCELLED) == STRANDED
    assert lifecycle.shipment_status(DELIVERED, DISPATCHED, DISPATCHED) == DELIVERED


def test_a_plan_is_delivered_when_every_shipment_that_counts_arrived():
    assert lifecycle.arrived(DISPATCHED, 3, 5) == DISPATCHED
    assert lifecycle.arrived(DISPATCHED, 5, 5) == DELIVERED
    assert lifecycle.after_deliveries(DISPATCHED, [DELIVERED, DISPATCHED]) == DISPATCHED
    assert lifecycle.after_deliveries(DISPATCHED, [DELIVERED, STRANDED]) == DELIVERED
    assert lifecycle.after_deliveries(DISPATCHED, [DELIVERED, DELIVERED]) == DELIVERED
    assert not lifecycle.counts(STRANDED) and lifecycle.counts(PLANNED)


def test_what_a_replan_does_to_holds_depends_on_dispatch():
    assert [s for s in STATUSES if lifecycle.on_the_way(s)] == [PLANNED, DISPATCHED]
    assert lifecycle.releases_stranded_holds(PLANNED)
    assert not lifecycle.releases_stranded_holds(DISPATCHED)
    assert lifecycle.commits_replacements(DISPATCHED)
    assert not lifecycle.commits_replacements(PLANNED)


def test_dispatch_commits_and_cancel_releases_with_their_events():
    assert lifecycle.SETTLEMENTS == {DISPATCH: "commit", CANCEL: "release"}
    assert lifecycle.EVENTS[DISPATCH] == "allocation.dispatched"
    assert lifecycle.EVENTS[CANCEL] == "allocation.cancelled"
    assert lifecycle.EVENTS[HOLD_OK] == lifecycle.EVENTS[REPLAN] == "allocation.planned"
    assert HOLD_REFUSED not in lifecycle.EVENTS and RECONCILE not in lifecycle.EVENTS


def test_the_lifecycle_is_pure():
    tree = ast.parse(inspect.getsource(lifecycle))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "collections.abc", "shared.errors", "shared.i18n"}
