"""The stock ledger: every change of a balance is an immutable line written in the same
transaction, so that a balance always equals the sum of its lines and is never negative.

Stock leaves by a conditional UPDATE (`... WHERE on_hand - reserved >= q`): on PostgreSQL the row
lock it takes serialises concurrent issues of the same stock, and the lots below it are touched
only while that lock is held; on SQLite writers are serialised by BEGIN IMMEDIATE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from inventory_svc import catalog
from inventory_svc.models import Item, Lot, Movement, Stock, Warehouse, outbox
from shared import events
from shared.auth import Identity
from shared.errors import Conflict, InvalidInput
from shared.sql import insert_for, locks_rows

KINDS = ("receipt", "issue", "adjustment")


class InsufficientStock(Conflict):
    slug, title = "insufficient-stock", "Not enough stock"


@dataclass
class Posted:
    """What one change did: its ledger lines and the balance after it."""

    warehouse: Warehouse
    item: Item
    kind: str
    quantity: int
    lines: list[Movement]
    on_hand: int
    reserved: int
    min: int
    target: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


def stock_row(session: Session, warehouse: Warehouse, item: Item) -> int:
    """The id of the balance row of (warehouse, item), created empty if missing."""
    insert = insert_for(session, Stock.__table__).values(
        warehouse_id=warehouse.id, item_id=item.id, on_hand=0, reserved=0, min=0, target=0)
    session.execute(insert.on_conflict_do_nothing(index_elements=["warehouse_id", "item_id"]))
    return session.scalar(select(Stock.id).where(Stock.warehouse_id == warehouse.id,
                                                 Stock.item_id == item.id))


def _line(session, warehouse, item, kind, quantity, balance, lot, expires_on, actor, reason,
          reference, at) -> Movement:
    movement = Movement(warehouse=warehouse, item=item, kind=kind, quantity=quantity,
                        balance_after=balance, lot=lot, expires_on=expires_on, actor=actor,
                        reason=reason, reference=reference, at=at)
    session.add(movement)
    return movement


def add_stock(session: Session, warehouse: Warehouse, item: Item, quantity: int, kind: str,
              actor: str, *, lot: str = "", expires_on: date | None = None,
              reason: str | None = None, reference: str | None = None) -> Posted:
    if item.perishable and expires_on is None:
        raise InvalidInput(f"{item.sku} is perishable: stock coming in needs its expiry date",
                           errors={"expires_on": ["required for perishable items"]})
    stock_id = stock_row(session, warehouse, item)
    row = session.execute(
        update(Stock).where(Stock.id == stock_id)
        .values(on_hand=Stock.on_hand + quantity)
        .returning(Stock.on_hand, Stock.reserved, Stock.min, Stock.target)).one()
    existing = session.execute(select(Lot.id, Lot.expires_on).where(
        Lot.stock_id == stock_id, Lot.lot == lot)).first()
    if existing is None:
        session.add(Lot(stock_id=stock_id, lot=lot, expires_on=expires_on, on_hand=quantity))
    else:
        if lot and expires_on and existing.expires_on and existing.expires_on != expires_on:
            raise InvalidInput(f"lot {lot!r} already expires on {existing.expires_on}",
                               errors={"expires_on": [f"lot {lot!r} expires on "
                                                      f"{existing.expires_on}"]})
        session.execute(update(Lot).where(Lot.id == existing.id)
                        .values(on_hand=Lot.on_hand + quantity))
    line = _line(session, warehouse, item, kind, quantity, row.on_hand, lot,
                 expires_on or (existing.expires_on if existing else None), actor, reason,
                 reference, datetime.now(UTC))
    posted = Posted(warehouse, item, kind, quantity, [line], row.on_hand, row.reserved, row.min,
                    row.target)
    _changed(session, posted, row.on_hand - quantity)
    return posted


def remove_stock(session: Session, warehouse: Warehouse, item: Item, quantity: int, kind: str,
                 actor: str, *, lot: str | None = None, reason: str | None = None,
                 reference: str | None = None, from_reserved: bool = False) -> Posted:
    """Take `quantity` out, earliest expiry first (or from one named lot).

    `from_reserved` takes stock that a reservation holds; otherwise only what is available.
    """
    stock_id = session.scalar(select(Stock.id).where(Stock.warehouse_id == warehouse.id,
                                                     Stock.item_id == item.id))
    guard = Stock.reserved >= quantity if from_reserved else (
        Stock.on_hand - Stock.reserved >= quantity)
    values: dict[str, Any] = {"on_hand": Stock.on_hand - quantity}
    if from_reserved:
        values["reserved"] = Stock.reserved - quantity
    row = None
    if stock_id is not None:
        row = session.execute(update(Stock).where(Stock.id == stock_id, guard).values(**values)
                              .returning(Stock.on_hand, Stock.reserved, Stock.min, Stock.target)
                              ).first()
    if row is None:
        available = session.execute(select(Stock.on_hand - Stock.reserved).where(
            Stock.id == stock_id)).scalar() if stock_id is not None else 0
        raise InsufficientStock(
            f"{warehouse.code} has {available or 0} {item.unit} of {item.sku} available, "
            f"{quantity} asked", extra={"available": available or 0, "requested": quantity,
                                        "warehouse": warehouse.code, "item": item.sku})
    lots = select(Lot).where(Lot.stock_id == stock_id, Lot.on_hand > 0).order_by(
        case((Lot.expires_on.is_(None), 1), else_=0), Lot.expires_on, Lot.id)
    if lot is not None:
        lots = lots.where(Lot.lot == lot)
    if locks_rows(session):
        lots = lots.with_for_update()
    lines, remaining, balance, now = [], quantity, row.on_hand + quantity, datetime.now(UTC)
    for each in session.scalars(lots):
        take = min(each.on_hand, remaining)
        each.on_hand -= take
        balance -= take
        remaining -= take
        lines.append(_line(session, warehouse, item, kind, -take, balance, each.lot,
                           each.expires_on, actor, reason, reference, now))
        if remaining == 0:
            break
    if remaining:
        raise InsufficientStock(f"lot {lot!r} of {item.sku} at {warehouse.code} holds "
                                f"{quantity - remaining}, {quantity} asked",
                                extra={"available": quantity - remaining, "requested": quantity,
                                       "warehouse": warehouse.code, "item": item.sku})
    posted = Posted(warehouse, item, kind, -quantity, lines, row.on_hand, row.reserved, row.min,
                    row.target)
    _changed(session, posted, row.on_hand + quantity)
    return posted


def _changed(session: Session, posted: Posted, before: int) -> None:
    data = {"warehouse": posted.warehouse.code, "item": posted.item.sku, "kind": posted.kind,
            "quantity": posted.quantity, "on_hand": posted.on_hand, "reserved": posted.reserved,
            "available": posted.available}
    events.record(session, outbox, "stock.changed", data)
    if posted.min and posted.on_hand < posted.min <= before:
        events.record(session, outbox, "stock.below_min", {**data, "min": posted.min,
                                                           "target": posted.target})


def apply(session: Session, identity: Identity, line: dict[str, Any]) -> Posted:
    """One movement of the contract (receipt, issue or adjustment) by a keeper in scope."""
    warehouse = catalog.get_warehouse(session, line["warehouse"], "warehouse")
    catalog.require_scope(identity, warehouse)
    item = catalog.get_item(session, line["item"], "item")
    kind, quantity = line["kind"], line["quantity"]
    common = {"reason": line.get("reason"), "reference": line.get("reference")}
    if kind == "adjustment" and not common["reason"]:
        raise InvalidInput("an adjustment needs a reason", errors={"reason": ["required for "
                                                                              "adjustments"]})
    if kind == "issue" or (kind == "adjustment" and quantity < 0):
        return remove_stock(session, warehouse, item, abs(quantity), kind, identity.actor,
                            lot=line.get("lot"), **common)
    if quantity <= 0:
        raise InvalidInput(f"a {kind} takes a positive quantity",
                           errors={"quantity": ["must be positive"]})
    return add_stock(session, warehouse, item, quantity, kind, identity.actor,
                     lot=line.get("lot") or "", expires_on=line.get("expires_on"), **common)


def post_movement(session: Session, identity: Identity, data: dict[str, Any]) -> Posted:
    return apply(session, identity, data)


def post_batch(session: Session, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
    """Several movements, all or none: the first failure rolls back the whole batch."""
    results = []
    for index, line in enumerate(data["lines"]):
        try:
            results.append(apply(session, identity, line))
        except (InvalidInput, Conflict) as exc:
            exc.detail = f"line {index}: {exc.detail}"
            if exc.errors:
                exc.errors = {f"lines.{index}.{k}": v for k, v in exc.errors.items()}
            exc.extra = {**exc.extra, "line": index}
            raise
    return {"lines": results}


def stock_card(session: Session, warehouse_code: str | None, item_sku: str | None,
               since: datetime | None, limit: int, after: int) -> list[Movement]:
    query = select(Movement).where(Movement.id > after).order_by(Movement.id).limit(limit)
    if warehouse_code:
        query = query.where(Movement.warehouse_id == catalog.get_warehouse(
            session, warehouse_code, "warehouse").id)
    if item_sku:
        query = query.where(Movement.item_id == catalog.get_item(session, item_sku, "item").id)
    if since:
        query = query.where(Movement.at >= since)
    return list(session.scalars(query))
