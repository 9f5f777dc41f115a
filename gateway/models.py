"""The gateway's own tables: bearer tokens (hashed), the event log, webhook subscriptions and the
record of every delivery attempt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.tables import BigId, idempotency_table, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


idempotency = idempotency_table(Base.metadata)


class Token(Base):
    """A bearer token; only the SHA-256 of the secret is kept."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(120))
    role: Mapped[str] = mapped_column(String(16))
    scope: Mapped[list] = mapped_column(JSON, default=list)
    # An integration that may only read: the gateway refuses its writes before passing them on.
    read_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """One event of a service's outbox, in the order the gateway received it.

    `id` is the position in the log (what `GET /events?after=` pages by, and what webhook
    receivers de-duplicate on); (`source`, `source_id`) is the row of the service's outbox, so a
    batch the relay sends twice is stored once.
    """

    __tablename__ = "events"
    __table_args__ = (UniqueConstraint("source", "source_id"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[dict] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    @property
    def key(self) -> str:
        return f"{self.source}:{self.source_id}"


class EventEntity(Base):
    """What an event is about (`plan:12`, `warehouse:KL`, `edge:e48` ...), one row each, so that
    `GET /audit?entity=` reads one entity's story by index, not the whole log."""

    __tablename__ = "event_entities"
    entity: Mapped[str] = mapped_column(String(120), primary_key=True)
    event_id: Mapped[int] = mapped_column(BigId, ForeignKey("events.id"), primary_key=True,
                                          autoincrement=False)


class Webhook(Base):
    """A subscription: where to POST which events, signed with its secret, in order.

    `cursor` is the id of the last event handled (delivered or not of a subscribed type); a
    failed delivery is tried again at `next_attempt_at`, and nothing after it is sent before it
    succeeds. `lease_until` keeps two dispatchers from delivering the same subscription at once.
    """

    __tablename__ = "webhooks"
    __table_args__ = (Index("ix_webhooks_due", "active", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(400))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(400))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    """One attempt to deliver one event to one subscription."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_hook", "webhook_id", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(400))
    duration_ms: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
