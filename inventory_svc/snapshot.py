"""One read of everything a plan needs: every warehouse with its place in the tree and every
balance of the asked items, in columns (a plan over 2,660 depots is one call, not fifty pages)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inventory_svc import reservations
from inventory_svc.models import Item, Stock, Warehouse


def snapshot(session: Session, items: list[str] | None) -> dict[str, Any]:
    reservations.expire_due(session)
    warehouses = session.execute(select(Warehouse.id, Warehouse.code, Warehouse.level,
                                        Warehouse.path, Warehouse.status, Warehouse.road_node)
                                 .order_by(Warehouse.id)).all()
    position = {row.id: index for index, row in enumerate(warehouses)}
    query = (select(Stock.warehouse_id, Item.sku, Stock.on_hand, Stock.reserved, Stock.min,
                    Stock.target).join(Item, Item.id == Stock.item_id).order_by(Stock.id))
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
            "available": [r.on_hand - r.reserved for r in rows],
            "min": [r.min for r in rows],
            "target": [r.target for r in rows],
        },
    }
