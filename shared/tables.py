"""Tables every service keeps in its own database: idempotency records and the event outbox."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, DateTime, Integer, MetaData, String, Table, Text

# 64-bit ids on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit (and autoincrements).
BigId = BigInteger().with_variant(Integer, "sqlite")
# Named constraints, so that Alembic can find and change them on both databases.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def service_metadata() -> MetaData:
    """The metadata of one service's own database."""
    return MetaData(naming_convention=NAMING)


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
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("type", String(64), nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("data", JSON, nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=True, index=True),
    )
