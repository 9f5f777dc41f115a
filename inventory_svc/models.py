"""Inventory tables. Balances live beside the ledger and are changed in the same transaction."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from inventory_svc.vocabulary import ADJUSTMENT, INWARD_KINDS, OUTWARD_KINDS
from shared.tables import BigId, idempotency_table, outbox_table, service_metadata


class Base(DeclarativeBase):
    metadata = service_metadata()


idempotency = idempotency_table(Base.metadata)
outbox = outbox_table(Base.metadata)


class Warehouse(Base):
    __tablename__ = "warehouses"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str | None] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("warehouses.id"), index=True)
    # "/QDN/KL/KL-T01/": the codes from the prefecture down, for subtree and scope checks.
    path: Mapped[str] = mapped_column(String(400), index=True)
    status: Mapped[str] = mapped_column(String(24), index=True)
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    road_node: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Stamped by the database as `Stock.changed` is: a snapshot since a version sends only the
    # warehouses added or changed since.
    changed: Mapped[int] = mapped_column(BigInteger, default=0, index=True)

    parent: Mapped[Warehouse | None] = relationship(remote_side=[id], lazy="joined",
                                                    join_depth=1)


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str | None] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(24))
    category: Mapped[str] = mapped_column(String(40))
    unit_weight_kg: Mapped[float] = mapped_column(Float, default=0.0)
    perishable: Mapped[bool] = mapped_column(Boolean, default=False)
    per_person: Mapped[float] = mapped_column(Float, default=0.0)
    per_person_day: Mapped[float] = mapped_column(Float, default=0.0)
    # {incident type: {"per_person": x, "per_person_day": y}}: an incident of that type uses
    # these norms instead of the two above (heaters for snow and ice, life jackets for a flood).
    type_norms: Mapped[dict] = mapped_column(JSON, default=dict)


class Stock(Base):
    """The balance of one item at one warehouse; the sum of its ledger lines, always."""

    __tablename__ = "stock"
    __table_args__ = (
        UniqueConstraint("warehouse_id", "item_id"),
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Found by warehouse through the unique (warehouse_id, item_id) index: no index of its own.
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    on_hand: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved: Mapped[int] = mapped_column(BigInteger, default=0)
    min: Mapped[int] = mapped_column(BigInteger, default=0)
    target: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set by the database on every insert and update (a trigger: no write path can forget it):
    # on PostgreSQL the writing transaction's id, on SQLite one more than the highest so far.
    # The snapshot answers what changed since a version by it (`snapshot.changes`).
    changed: Mapped[int] = mapped_column(BigInteger, default=0, index=True)

    warehouse: Mapped[Warehouse] = relationship(lazy="joined")
    item: Mapped[Item] = relationship(lazy="joined")

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class Lot(Base):
    """Part of a balance with its own expiry: stock is kept by (lot, expiry), lot "" being
    stock received without a lot name, so unnamed stock of two dates stays two parts."""

    __tablename__ = "lots"
    __table_args__ = (
        UniqueConstraint("stock_id", "lot", "expires_on"),
        CheckConstraint("on_hand >= 0", name="lot_not_negative"),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    stock_id: Mapped[int] = mapped_column(ForeignKey("stock.id"), index=True)
    lot: Mapped[str] = mapped_column(String(64), default="")
    # Indexed: what is expired, or expires soon, is found without reading every lot.
    expires_on: Mapped[date | None] = mapped_column(Date, index=True)
    on_hand: Mapped[int] = mapped_column(BigInteger, default=0)


def _one_of(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


# The sign rule of ledger.QUANTITY_RULE, as the ledger stores it: + in, - out, never 0.
MOVEMENT_SIGN = (f"({_one_of(INWARD_KINDS)} AND quantity > 0) OR "
                 f"({_one_of(OUTWARD_KINDS)} AND quantity < 0) OR "
                 f"(kind = '{ADJUSTMENT}' AND quantity <> 0)")


class Movement(Base):
    """One immutable line of the stock card; `quantity` is the signed change (+ in, - out)."""

    __tablename__ = "movements"
    __table_args__ = (Index("ix_movements_stock_card", "warehouse_id", "item_id", "id"),
                      CheckConstraint(MOVEMENT_SIGN, name="signed_as_its_kind"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    warehouse_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    lot: Mapped[str] = mapped_column(String(64), default="")
    expires_on: Mapped[date | None] = mapped_column(Date)
    reason: Mapped[str | None] = mapped_column(String(400))
    reference: Mapped[str | None] = mapped_column(String(200))
    actor: Mapped[str] = mapped_column(String(120))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)

    warehouse: Mapped[Warehouse] = relationship(lazy="joined")
    item: Mapped[Item] = relationship(lazy="joined")


class Transfer(Base):
    __tablename__ = "transfers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"), index=True)
    destination_id: Mapped[int] = mapped_column(ForeignKey("warehouses.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reference: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_by: Mapped[str | None] = mapped_column(String(120))
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    source: Mapped[Warehouse] = relationship(foreign_keys=[source_id], lazy="joined")
    destination: Mapped[Warehouse] = relationship(foreign_keys=[destination_id], lazy="joined")
    lines: Mapped[list[TransferLine]] = relationship(lazy="selectin", order_by="TransferLine.id")


class TransferLine(Base):
    __tablename__ = "transfer_lines"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    transfer_id: Mapped[int] = mapped_column(ForeignKey("transfers.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    quantity: Mapped[int] = mapped_column(BigInteger)
    # The lots that left the source, [{"lot", "expires_on", "quantity"}], to arrive as they left.
    lots: Mapped[list] = mapped_column(JSON)
    received: Mapped[int | None] = mapped_column(BigInteger)
    shortfall_reason: Mapped[str | None] = mapped_column(String(400))

    item: Mapped[Item] = relationship(lazy="joined")


class Reservation(Base):
    __tablename__ = "reservations"
    __table_args__ = (Index("ix_reservations_due", "status", "expires_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    lines: Mapped[list[ReservationLine]] = relationship(lazy="selectin",
                                                        order_by="ReservationLine.id")


class ReservationLine(Base):
    __tablename__ = "reservation_lines"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    reservation_id: Mapped[int] = mapped_column(ForeignKey("reservations.id"), index=True)
    stock_id: Mapped[int] = mapped_column(ForeignKey("stock.id"))
    quantity: Mapped[int] = mapped_column(BigInteger)

    stock: Mapped[Stock] = relationship(lazy="joined")

    @property
    def warehouse_code(self) -> str:
        return self.stock.warehouse.code

    @property
    def item_sku(self) -> str:
        return self.stock.item.sku
