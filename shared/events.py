"""Recording domain events in the outbox, inside the caller's transaction. Every event says who
caused it (`actor`: the signed identity of the request, `system` for the background worker), so
that the gateway's log answers who changed what (`GET /audit`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

EVENT_TYPES = (
    "stock.changed", "stock.below_min", "catalog.changed", "incident.declared",
    "incident.updated", "incident.escalated", "allocation.planned", "allocation.dispatched",
    "allocation.cancelled", "allocation.lapsed", "allocation.affected", "allocation.delivered",
    "road.changed", "transfer.created", "transfer.received", "warning.issued",
)


def record(session: Session, outbox: Table, type_: str, data: dict[str, Any]) -> None:
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    data = {**data, "actor": data.get("actor") or current_actor()}
    session.execute(insert(outbox).values(type=type_, at=datetime.now(UTC), data=data))


def current_actor() -> str:
    """Who is acting: the request's signed identity, or the background worker."""
    from flask import g, has_request_context

    identity = g.get("identity") if has_request_context() else None
    return identity.actor if identity is not None else SYSTEM


SYSTEM = "system"
