"""Allocation tables: the road network and its versions, incidents, plans and their shipments,
replenishment plans."""

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
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from allocation_svc.roadtable import OPEN, STATUS_NAMES
from allocation_svc.vocabulary import INCIDENT_OPEN
from shared.tables import BigId, idempotency_table, outbox_table, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


idempotency = idempotency_table(Base.metadata)
outbox = outbox_table(Base.metadata)


class RoadNode(Base):
    __tablename__ = "road_nodes"
    seq: Mapped[int] = mapped_column(BigId, primary_key=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    lon: Mapped[float] = mapped_column(Float)
    lat: Mapped[float] = mapped_column(Float)


class RoadEdge(Base):
    __tablename__ = "road_edges"
    seq: Mapped[int] = mapped_column(BigId, primary_key=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    from_node: Mapped[str] = mapped_column(String(64))
    to_node: Mapped[str] = mapped_column(String(64))
    length_km: Mapped[float] = mapped_column(Float)
    road_class: Mapped[str] = mapped_column(String(16))
    speed_kmh: Mapped[float | None] = mapped_column(Float)
    oneway: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default=STATUS_NAMES[OPEN])
    speed_factor: Mapped[float] = mapped_column(Float, default=1.0)
    reason: Mapped[str | None] = mapped_column(String(400))


class GraphVersion(Base):
    """Every change of the road network (an import, a batch of road events) is a new version."""

    __tablename__ = "graph_versions"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    # For a batch of road events: the events, so a cached graph can be advanced, not reloaded.
    events: Mapped[list | None] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Incident(Base):
    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    level: Mapped[str | None] = mapped_column(String(4))
    title: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=INCIDENT_OPEN)
    # [{"id", "warehouse", "node", "population", "township", "county"}]
    sites: Mapped[list] = mapped_column(JSON)
    # A drill (the monthly exercise) plans like a real response but never holds or moves stock.
    drill: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Every amendment after the first report: [{"at", "actor", "changes": {field: {from, to}}}]
    history: Mapped[list | None] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Plan(Base):
    __tablename__ = "plans"
    __table_args__ = (Index("ix_plans_status_created", "status", "created_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    graph_version: Mapped[int] = mapped_column(Integer)
    policy: Mapped[dict] = mapped_column(JSON)
    demands: Mapped[list] = mapped_column(JSON)
    unmet: Mapped[list] = mapped_column(JSON, default=list)
    cost: Mapped[float] = mapped_column(Float, default=0.0)
    # The vehicles that carry the shipments (see trips.Trip), and with them the objective
    # (cost + trip_cost x trips), its lower bound and the relative gap; no bound after a re-plan.
    trips: Mapped[list | None] = mapped_column(JSON, default=list)
    objective: Mapped[float | None] = mapped_column(Float)
    bound: Mapped[float | None] = mapped_column(Float)
    gap: Mapped[float | None] = mapped_column(Float)
    # Reservation ids in the inventory service: the first hold, and any made by re-planning.
    reservations: Mapped[list] = mapped_column(JSON, default=list)
    # When the hold runs out unless the plan is dispatched first (then the plan is `lapsed`).
    hold_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    drill: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    failure: Mapped[str | None] = mapped_column(String(400))
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    shipments: Mapped[list[Shipment]] = relationship(lazy="selectin", order_by="Shipment.id",
                                                     cascade="all, delete-orphan")


class Shipment(Base):
    __tablename__ = "shipments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"), index=True)
    source: Mapped[str] = mapped_column(String(40))
    site: Mapped[str] = mapped_column(String(64))
    item: Mapped[str] = mapped_column(String(40))
    quantity: Mapped[int] = mapped_column(BigInteger)
    minutes: Mapped[float] = mapped_column(Float)
    distance_km: Mapped[float] = mapped_column(Float)
    path: Mapped[list] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(600))  # in English
    reason_parts: Mapped[list | None] = mapped_column(JSON)  # to say it again (shared.i18n)
    status: Mapped[str] = mapped_column(String(16))
    reservation_id: Mapped[int | None] = mapped_column(BigInteger)
    delivered: Mapped[int] = mapped_column(BigInteger, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(String(400))


class WeatherWarning(Base):
    """A warning before anything happens: an area (townships or counties) and a window, and
    the people it may drive from home, for which stock is moved towards it beforehand."""

    __tablename__ = "warnings"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    area: Mapped[list] = mapped_column(JSON)  # warehouse codes: townships or counties
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    people: Mapped[int] = mapped_column(BigInteger)
    days: Mapped[int] = mapped_column(Integer)
    replenishment_id: Mapped[int | None] = mapped_column(BigInteger)  # its pre-positioning
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Replenishment(Base):
    __tablename__ = "replenishments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    graph_version: Mapped[int] = mapped_column(Integer)
    # [{"source", "destination", "item", "quantity", "minutes", "distance_km", "path"}]
    lines: Mapped[list] = mapped_column(JSON)
    short: Mapped[list] = mapped_column(JSON, default=list)
    transfers: Mapped[list] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    executed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
