"""The event log: what the services' relays send, stored once each, in the order received.

Ingest batches are serialised (a table lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), so ids
are committed in increasing order: a reader paging with `after=` never skips an id that commits
later, and neither does the webhook dispatcher.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from gateway import metrics
from gateway.models import Event, EventEntity
from shared.sql import insert_for, locks_rows


def ingest(session: Session, source: str, events: list[dict[str, Any]]) -> dict[str, int]:
    """Store a relay's batch in two statements whatever its size (the events, then what they
    are about): row by row, a storm's movements cost the gateway more than passing them on."""
    if locks_rows(session):
        session.execute(text("LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE"))
    now = datetime.now(UTC)
    ordered = sorted(events, key=lambda e: e["id"])
    stored: dict[int, int] = {}
    if ordered:
        statement = insert_for(session, Event.__table__).on_conflict_do_nothing(
            index_elements=["source", "source_id"]).returning(
            Event.id, Event.source_id)
        rows = session.execute(statement, [
            {"source": source, "source_id": e["id"], "type": e["type"], "at": e["at"],
             "data": e["data"], "received_at": now} for e in ordered])
        stored = {source_id: event_id for event_id, source_id in rows}
    about = [{"entity": entity, "event_id": stored[e["id"]]} for e in ordered
             if e["id"] in stored for entity in sorted(entities(e["type"], e["data"]))]
    if about:
        session.execute(insert_for(session, EventEntity.__table__), about)
    if stored:
        metrics.EVENTS_INGESTED.labels(source).inc(len(stored))
    last = session.scalar(select(func.max(Event.source_id)).where(Event.source == source))
    return {"received": len(events), "stored": len(stored), "last": last or 0}


def entities(type_: str, data: dict[str, Any]) -> set[str]:
    """What an event is about, as `kind:id` names (see `GET /audit`)."""
    family = type_.split(".", 1)[0]
    about: set[str] = set()
    if family == "stock":
        about |= {f"warehouse:{data.get('warehouse')}", f"item:{data.get('item')}"}
    elif family == "incident":
        about.add(f"incident:{data.get('id')}")
    elif family == "allocation":
        about |= {f"plan:{data.get('id')}", f"incident:{data.get('incident')}"}
    elif family == "transfer":
        about |= {f"transfer:{data.get('id')}", f"warehouse:{data.get('source')}",
                  f"warehouse:{data.get('destination')}"}
    elif family == "warning":
        about.add(f"warning:{data.get('id')}")
    elif family == "catalog":
        kind = "item" if data.get("entity") == "item" else "warehouse"
        about.add(f"{kind}:{data.get('code')}")
    elif family == "road":
        about |= {f"edge:{e.get('edge')}" for e in data.get("events") or []} or {"roads:network"}
    if data.get("actor"):
        about.add(f"actor:{data['actor']}")
    return {name[:120] for name in about if not name.endswith(":None")}


def audit(session: Session, entity: str, after: int, limit: int) -> list[Event]:
    """The events about `entity`, oldest first: who changed what, and when."""
    return list(session.scalars(
        select(Event).join(EventEntity, EventEntity.event_id == Event.id)
        .where(EventEntity.entity == entity, Event.id > after).order_by(Event.id).limit(limit)))


def list_events(session: Session, after: int, types: list[str] | None,
                limit: int) -> list[Event]:
    query = select(Event).where(Event.id > after).order_by(Event.id).limit(limit)
    if types:
        query = query.where(Event.type.in_(types))
    return list(session.scalars(query))


def last_id(session: Session) -> int:
    return session.scalar(select(func.max(Event.id))) or 0
