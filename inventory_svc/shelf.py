"""Lots past their date. Expired stock stays on hand (it is still on the shelf, and the ledger
still counts it) until a keeper writes it off, but it is not relief: it is not available, not
planned, not held, not issued and not sent on a transfer.

A lot is expired from the day after its `expires_on`, counted in the prefecture's time zone,
China Standard Time (Asia/Shanghai: UTC+8 all year, no daylight saving since 1991, so a fixed
offset needs no time-zone database): stock dated 1 June is issued all of 1 June in Kaili, not
only until 16:00 as a UTC date would have it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Date, Subquery, bindparam, cast, func, select
from sqlalchemy.orm import Session

from inventory_svc import catalog
from inventory_svc.models import Item, Lot, Stock, Warehouse
from inventory_svc.permissions import require_sight, scope_filter
from shared.auth import Identity

PREFECTURE_TIME = timezone(timedelta(hours=8), "Asia/Shanghai")


# The prefecture's date in statements built once and bound on each call (`today(at)`).
TODAY = bindparam("today", type_=Date)


def today(now: datetime | None = None) -> date:
    """The prefecture's date now: a lot dated before it is expired."""
    return (now or datetime.now(UTC)).astimezone(PREFECTURE_TIME).date()


def expired_in_balance(day, stock_id: ColumnElement[int] = Stock.id) -> ColumnElement[int]:
    """How much of a balance (correlated to `stock_id`, `Stock.id` unless given) is past its
    date on `day` (a date or a bind parameter): for the guarded UPDATEs that hold or take only
    what is usable."""
    return (select(cast(func.coalesce(func.sum(Lot.on_hand), 0), BigInteger))
            .where(Lot.stock_id == stock_id, Lot.expires_on < day).scalar_subquery())


def expired_stock(day: date | ColumnElement | None = None
                  ) -> tuple[Subquery, ColumnElement[int]]:
    """The expired stock per balance, (stock_id, quantity), and the expression of it for
    reads that outer-join it on `stock_id == Stock.id`, as `expiry.live_reserved` is. Found
    by the lots' expiry index, so it costs little while few lots are expired."""
    expired = (select(Lot.stock_id,  # a bigint sum is numeric on PostgreSQL
                      cast(func.sum(Lot.on_hand), BigInteger).label("quantity"))
               .where(Lot.expires_on < (today() if day is None else day), Lot.on_hand > 0)
               .group_by(Lot.stock_id).subquery("expired"))
    return expired, func.coalesce(expired.c.quantity, 0)


def usable(on_hand: int, reserved: int, expired: int) -> int:
    """What can be held or issued: neither held nor expired. Holds made before their stock
    expired may hold more than is left usable, so it is never below 0."""
    return max(0, on_hand - reserved - expired)


def lots(session: Session, identity: Identity, warehouse_code: str, sku: str, limit: int,
         after: int) -> list[dict[str, Any]]:
    """The lots of one balance with stock in them, by id; a keeper sees only its scope."""
    warehouse, item = catalog.get_warehouse_and_item(session, warehouse_code, sku)
    require_sight(identity, warehouse)
    query = (select(Lot).join(Stock, Stock.id == Lot.stock_id)
             .where(Stock.warehouse_id == warehouse.id, Stock.item_id == item.id,
                    Lot.on_hand > 0, Lot.id > after).order_by(Lot.id).limit(limit))
    day = today()
    return [_row(lot, warehouse.code, item.sku, day) for lot in session.scalars(query)]


def expiring(session: Session, identity: Identity, within_days: int, warehouse_code: str | None,
             limit: int, after: int) -> list[dict[str, Any]]:
    """Lots that expire within `within_days` days, and those expired already, by id, in the
    subtree of `warehouse_code` (everywhere when none); a keeper sees only its scope."""
    day = today()
    query = (select(Lot, Warehouse.code, Item.sku).join(Stock, Stock.id == Lot.stock_id)
             .join(Warehouse, Warehouse.id == Stock.warehouse_id)
             .join(Item, Item.id == Stock.item_id)
             .where(Lot.expires_on <= day + timedelta(days=within_days), Lot.on_hand > 0,
                    Lot.id > after).order_by(Lot.id).limit(limit))
    if warehouse_code:
        root = catalog.get_warehouse(session, warehouse_code, "warehouse")
        require_sight(identity, root)
        query = query.where(Warehouse.path.startswith(root.path, autoescape=True))
    seen = scope_filter(identity, Warehouse.path)
    if seen is not None:
        query = query.where(seen)
    return [_row(lot, code, sku, day) for lot, code, sku in session.execute(query)]


def _row(lot: Lot, warehouse: str, item: str, day: date) -> dict[str, Any]:
    days_left = None if lot.expires_on is None else (lot.expires_on - day).days
    return {"id": lot.id, "warehouse": warehouse, "item": item, "lot": lot.lot,
            "expires_on": lot.expires_on, "on_hand": lot.on_hand, "days_left": days_left,
            "expired": days_left is not None and days_left < 0}
