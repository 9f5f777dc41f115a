"""Tables every service keeps in its own database: idempotency records and the event outbox."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text


def idempotency_table(metadata: MetaData) -> Table:
    return Table(
        "idempotency_keys", metadata,
        Column("key", String(200), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("status", Integer, nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    )


def outbox_table(metadata: MetaData) -> Table:
    """Events written in the same transaction as the change they describe; a relay ships them."""
    return Table(
        "outbox", metadata,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("type", String(64), nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("data", JSON, nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=True, index=True),
    )
