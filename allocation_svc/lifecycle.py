"""The life of an allocation plan: its statuses, the table of which action takes a plan from
which status to which, and what that does to its shipments and holds.

    reserving --hold ok--> planned --dispatch--> dispatched --deliver (all arrived)--> delivered
        |                    |   ^                   ^  |
        |                    +---+ replan            +--+ replan
        |                    +--cancel--> cancelled
        +--hold refused, reconcile--> failed

A shipment moves with its plan while it is in the plan's status; one cut off by a road event is
`stranded` (and its quantity sourced again), one that has arrived is `delivered`. Pure: the plan
service asks this module before every step; nothing here reads a database or calls a service.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.errors import Conflict
from shared.i18n import _

# Statuses of a plan and of its shipments.
RESERVING = "reserving"  # recorded, its stock being held in the inventory
PLANNED = "planned"  # its stock held
DISPATCHED = "dispatched"  # its stock issued: on the road
DELIVERED = "delivered"  # every shipment arrived
CANCELLED = "cancelled"  # its hold released before dispatch
FAILED = "failed"  # its hold refused, or abandoned and undone
STRANDED = "stranded"  # a shipment whose road is gone; its quantity was sourced again
LAPSED = "lapsed"  # its hold ran out before dispatch: the stock is free again; hold or cancel
# The statuses as the reader says them (the API's status fields stay these codes).
STATUS_WORDS = {RESERVING: _("reserving"), PLANNED: _("planned"), DISPATCHED: _("dispatched"),
                DELIVERED: _("delivered"), CANCELLED: _("cancelled"), FAILED: _("failed"),
                STRANDED: _("stranded"), LAPSED: _("lapsed")}
STATUSES = (RESERVING, PLANNED, DISPATCHED, DELIVERED, CANCELLED, FAILED, STRANDED, LAPSED)

# What happens to a plan.
HOLD_OK = "hold ok"
HOLD_REFUSED = "hold refused"
DISPATCH = "dispatch"
CANCEL = "cancel"
DELIVER = "deliver"
REPLAN = "replan"
RECONCILE = "reconcile"
LAPSE = "lapse"  # the inventory let the hold go (its time ran out)
HOLD_AGAIN = "hold again"  # a lapsed plan's stock held anew
ACTIONS = (HOLD_OK, HOLD_REFUSED, DISPATCH, CANCEL, DELIVER, REPLAN, RECONCILE, LAPSE,
           HOLD_AGAIN)

# (status, action) -> the plan's status after it; any pair not here is refused. A delivery
# keeps a plan dispatched until every shipment has arrived (`after_deliveries`).
TRANSITIONS: dict[tuple[str, str], str] = {
    (RESERVING, HOLD_OK): PLANNED,
    (RESERVING, HOLD_REFUSED): FAILED,
    (RESERVING, RECONCILE): FAILED,
    (PLANNED, DISPATCH): DISPATCHED,
    (PLANNED, CANCEL): CANCELLED,
    (PLANNED, REPLAN): PLANNED,
    (DISPATCHED, REPLAN): DISPATCHED,
    (DISPATCHED, DELIVER): DISPATCHED,
    (DELIVERED, DELIVER): DELIVERED,
    (PLANNED, LAPSE): LAPSED,
    (LAPSED, HOLD_AGAIN): PLANNED,
    (LAPSED, CANCEL): CANCELLED,
}

# Statuses where the action is already done: the plan is answered as it is and nothing is done
# again (a second dispatch of a dispatched plan, a cancel of a plan whose hold is gone).
ALREADY_DONE: dict[str, tuple[str, ...]] = {
    DISPATCH: (DISPATCHED, DELIVERED),
    CANCEL: (CANCELLED, FAILED),
    HOLD_AGAIN: (PLANNED, DISPATCHED, DELIVERED),
    LAPSE: (LAPSED,),
}

# What dispatch and cancel do to the plan's holds in the inventory, and the event they record.
SETTLEMENTS: dict[str, str] = {DISPATCH: "commit", CANCEL: "release"}
EVENTS: dict[str, str] = {HOLD_OK: "allocation.planned", REPLAN: "allocation.planned",
                          DISPATCH: "allocation.dispatched", CANCEL: "allocation.cancelled",
                          LAPSE: "allocation.lapsed", HOLD_AGAIN: "allocation.planned"}

_REFUSALS: dict[str, str] = {
    HOLD_OK: _("only a plan being reserved has its hold settled"),
    HOLD_REFUSED: _("only a plan being reserved has its hold settled"),
    RECONCILE: _("only a plan being reserved has its hold settled"),
    DISPATCH: _("only a planned plan is dispatched"),
    CANCEL: _("its stock has left the depots"),
    DELIVER: _("only dispatched shipments arrive"),
    REPLAN: _("only planned or dispatched plans are re-planned"),
    LAPSE: _("only a planned plan's hold lapses"),
    HOLD_AGAIN: _("only a plan whose hold lapsed is held again"),
}


def allowed(current: str, action: str) -> bool:
    return (current, action) in TRANSITIONS


def already_done(current: str, action: str) -> bool:
    return current in ALREADY_DONE.get(action, ())


def next_status(current: str, action: str, plan_id: int | None) -> str:
    """The plan's status after `action`; the same status when it was already done; Conflict
    (409, in the words the API has always answered) when a plan in `current` may not."""
    if already_done(current, action):
        return current
    after = TRANSITIONS.get((current, action))
    if after is None:
        raise Conflict(_("plan %(plan)s is %(status)s; %(why)s", plan=plan_id,
                         status=STATUS_WORDS.get(current, current), why=_REFUSALS[action]))
    return after


def shipment_status(shipment: str, plan_before: str, plan_after: str) -> str:
    """A shipment moves with its plan while it is where the plan was; a stranded or delivered
    one stays as it is."""
    return plan_after if shipment == plan_before else shipment


def on_the_way(shipment: str) -> bool:
    """A shipment a re-plan may reroute or strand: held or dispatched, not yet arrived."""
    return shipment in (PLANNED, DISPATCHED)


def counts(shipment: str) -> bool:
    """Whether a shipment is part of the plan's cost and of its delivery (a stranded one was
    replaced by others)."""
    return shipment != STRANDED


def arrived(shipment: str, delivered: int, quantity: int) -> str:
    """A shipment's status once `delivered` of its `quantity` has arrived."""
    return DELIVERED if delivered == quantity else shipment


def after_deliveries(current: str, shipments: Iterable[str]) -> str:
    """The plan is delivered when every shipment that counts has arrived."""
    if all(status == DELIVERED for status in shipments if counts(status)):
        return DELIVERED
    return current


def settles_holds(current: str) -> bool:
    """Whether dispatch or cancel has holds to commit or release: a lapsed plan has none."""
    return current != LAPSED


def releases_stranded_holds(current: str) -> bool:
    """A re-plan of a planned plan frees what its cut-off shipments held (nothing left yet)."""
    return current == PLANNED


def commits_replacements(current: str) -> bool:
    """A re-plan of a dispatched plan issues the replacements' stock at once."""
    return current == DISPATCHED
