"""Recording domain events in the outbox, inside the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

EVENT_TYPES = (
    "stock.changed", "stock.below_min", "incident.declared", "allocation.planned",
    "allocation.dispatched", "allocation.cancelled", "road.changed", "transfer.created",
    "transfer.received",
)


def record(session: Session, outbox: Table, type_: str, data: dict[str, Any]) -> None:
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_!r}")
    session.execute(insert(outbox).values(type=type_, at=datetime.now(UTC), data=data))
