"""One read of everything a plan needs: every warehouse with its place in the tree and every
balance of the asked items, in columns (a plan over 2,660 depots is one call, not fifty pages).
Two queries, and no write: holds past their time are left out of `available` in the second, and
so is stock past its date (`expired`, still on hand until written off). `in_transit` is what
transfers not yet received bring to the balance, for restocking not to order it twice."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, case, cast, func, select
from sqlalchemy.orm import Session

from inventory_svc import shelf
from inventory_svc.expiry import live_reserved
from inventory_svc.models import Item, Stock, Transfer, TransferLine, Warehouse
from inventory_svc.vocabulary import IN_TRANSIT


def snapshot(session: Session, items: list[str] | None) -> dict[str, Any]:
    warehouses = session.execute(select(Warehouse.id, Warehouse.code, Warehouse.level,
                                        Warehouse.path, Warehouse.status, Warehouse.road_node)
                                 .order_by(Warehouse.id)).all()
    position = {row.id: index for index, row in enumerate(warehouses)}
    overdue, reserved = live_reserved()
    past, expired = shelf.expired_stock()
    coming = (select(Transfer.destination_id, TransferLine.item_id,
                     cast(func.sum(TransferLine.quantity), BigInteger).label("quantity"))
              .join(Transfer, Transfer.id == TransferLine.transfer_id)
              .where(Transfer.status == IN_TRANSIT)
              .group_by(Transfer.destination_id, TransferLine.item_id).subquery("coming"))
    left = Stock.on_hand - reserved - expired
    query = (select(Stock.warehouse_id, Item.sku, Stock.on_hand,
                    case((left > 0, left), else_=0).label("available"),
                    expired.label("expired"),
                    func.coalesce(coming.c.quantity, 0).label("in_transit"),
                    Stock.min, Stock.target)
             .join(Item, Item.id == Stock.item_id)
             .outerjoin(overdue, overdue.c.stock_id == Stock.id)
             .outerjoin(past, past.c.stock_id == Stock.id)
             .outerjoin(coming, (coming.c.destination_id == Stock.warehouse_id)
                        & (coming.c.item_id == Stock.item_id))
             .order_by(Stock.id))
    if items:
        query = query.where(Item.sku.in_(items))
    rows = session.execute(query).all()
    return {
        "warehouses": {
            "code": [w.code for w in warehouses],
            "level": [w.level for w in warehouses],
            "path": [w.path for w in warehouses],
            "status": [w.status for w in warehouses],
            "road_node": [w.road_node for w in warehouses],
        },
        "stock": {
            "warehouse": [position[r.warehouse_id] for r in rows],
            "item": [r.sku for r in rows],
            "on_hand": [r.on_hand for r in rows],
            "available": [r.available for r in rows],
            "expired": [r.expired for r in rows],
            "in_transit": [r.in_transit for r in rows],
            "min": [r.min for r in rows],
            "target": [r.target for r in rows],
        },
    }
