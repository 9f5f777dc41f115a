"""Reading balances, counting stock (stocktakes) and setting min/target levels."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Select,
    String,
    bindparam,
    case,
    func,
    select,
)
from sqlalchemy.orm import Session

from inventory_svc import catalog, ledger, shelf
from inventory_svc.expiry import NOW, expire_due, live_reserved
from inventory_svc.models import Item, Stock, Warehouse, outbox
from inventory_svc.permissions import require
from inventory_svc.vocabulary import ADJUSTMENT
from shared import events
from shared.auth import Identity
from shared.errors import InvalidInput


@dataclass(frozen=True)
class Balance:
    """A balance as a read answers it: holds past their time no longer count in `reserved`,
    and stock past its date, still on hand until written off, is not `available`."""

    id: int
    warehouse: str
    item: str
    on_hand: int
    reserved: int
    min: int
    target: int
    expired: int

    @property
    def available(self) -> int:
        return shelf.usable(self.on_hand, self.reserved, self.expired)


def list_stock(session: Session, warehouse: str | None, item: str | None, subtree: bool,
               below_min: bool, limit: int, after: int) -> list[Balance]:
    bound = {**as_of(datetime.now(UTC)), "after": after, "limit": limit}
    if warehouse and item:  # one light query for both (a keeper's look at one balance)
        root, found = catalog.get_warehouse_and_item(session, warehouse, item)
        bound["item_id"] = found.id
    elif warehouse:
        root = catalog.get_warehouse(session, warehouse, "warehouse")
    elif item:
        bound["item_id"] = catalog.get_item(session, item, "item").id
    if warehouse and subtree:
        bound["prefix"] = _like_escaped(root.path) + "%"
    elif warehouse:
        bound["warehouse_id"] = root.id
    query = _balances("subtree" if warehouse and subtree else "one" if warehouse else None,
                      bool(item), below_min)
    return [Balance(*row) for row in session.execute(query, bound)]


def as_of(at: datetime) -> dict[str, Any]:
    """The clock a balances' statement built once is bound to: holds past their time
    (`expiry.NOW`) and lots past their date (`shelf.TODAY`) as of `at`."""
    return {"now": at, "today": shelf.today(at)}


@functools.cache
def _balances(warehouses: str | None, one_item: bool, below_min: bool) -> Select:
    """The balances' read for each shape of question (`warehouses`: None, "one" or "subtree"),
    built once and bound on each call, the codes in it: built anew with the balances as ORM
    rows, a read of one balance cost 3.1 ms of CPU, 1.3 this way."""
    overdue, reserved = live_reserved(NOW)
    past, expired = shelf.expired_stock(shelf.TODAY)
    query = (select(Stock.id, Warehouse.code, Item.sku, Stock.on_hand, reserved, Stock.min,
                    Stock.target, expired)
             .join(Warehouse, Warehouse.id == Stock.warehouse_id)
             .join(Item, Item.id == Stock.item_id)
             .outerjoin(overdue, overdue.c.stock_id == Stock.id)
             .outerjoin(past, past.c.stock_id == Stock.id)
             .where(Stock.id > bindparam("after", type_=BigInteger)).order_by(Stock.id)
             .limit(bindparam("limit", type_=Integer)))
    if warehouses == "subtree":
        query = query.where(Warehouse.path.like(bindparam("prefix", type_=String), escape="\\"))
    elif warehouses == "one":
        query = query.where(Stock.warehouse_id == bindparam("warehouse_id", type_=BigInteger))
    if one_item:
        query = query.where(Stock.item_id == bindparam("item_id", type_=BigInteger))
    if below_min:
        query = query.where(Stock.on_hand < Stock.min)
    return query


def _like_escaped(text: str) -> str:
    """`text` matched as itself at the start of a LIKE pattern (codes may hold `_`)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def summary(session: Session, item: str | None, by: str) -> list[dict[str, Any]]:
    """Totals over the whole network, per level or per county (a county's whole subtree)."""
    if by == "county":
        # The second segment of "/QDN/KL/..." is the county; the prefecture depot stands alone.
        postgres = session.get_bind().dialect.name == "postgresql"
        group = func.coalesce(func.nullif(_segment(Warehouse.path, 2, postgres), ""),
                              _segment(Warehouse.path, 1, postgres))
    else:
        group = Warehouse.level
    overdue, reserved = live_reserved()
    past, expired = shelf.expired_stock()
    # Each balance's available as a list row shows it, summed (not the sums subtracted).
    left = Stock.on_hand - reserved - expired
    available = case((left > 0, left), else_=0)
    query = (select(group.label("group"), Item.sku, func.sum(Stock.on_hand), func.sum(reserved),
                    func.sum(available), func.sum(Stock.min), func.count())
             .select_from(Stock).join(Stock.warehouse).join(Stock.item)
             .outerjoin(overdue, overdue.c.stock_id == Stock.id)
             .outerjoin(past, past.c.stock_id == Stock.id)
             .group_by(group, Item.sku).order_by(group, Item.sku))
    if item:
        query = query.where(Item.sku == catalog.get_item(session, item, "item").sku)
    return [{"group": g, "item": sku, "on_hand": int(on_hand), "reserved": int(reserved),
             "available": int(free), "min": int(minimum), "warehouses": n}
            for g, sku, on_hand, reserved, free, minimum, n in session.execute(query)]


def _segment(path, index: int, postgres: bool):
    """Segment `index` (1-based) of a "/a/b/c/" path ("" past its end), in SQL: PostgreSQL
    has split_part; SQLite has neither that nor strpos, so it is cut with instr and substr."""
    if postgres:
        return func.split_part(path, "/", index + 1)
    rest = path
    for _ in range(index):
        rest = func.substr(rest, func.instr(rest, "/") + 1)
    return func.substr(rest, 1, func.instr(rest, "/") - 1)


def set_levels(session: Session, identity: Identity, code: str,
               data: dict[str, Any]) -> dict[str, list[Stock]]:
    warehouse = catalog.get_warehouse(session, code)
    require(identity, "levels.write", warehouse)
    items = []
    for index, level in enumerate(data["levels"]):
        if level["target"] < level["min"]:
            raise InvalidInput(f"levels[{index}]: target {level['target']} is below min "
                               f"{level['min']}", errors={f"levels.{index}.target":
                                                          ["must be at least min"]})
        items.append(catalog.get_item(session, level["item"], f"levels.{index}.item"))
    ids = ledger.lock_balances(session, [(warehouse, item) for item in items])
    rows, changes = [], {}
    for item, level in zip(items, data["levels"], strict=True):
        stock = session.get(Stock, ids[warehouse.id, item.id], populate_existing=True)
        if (stock.min, stock.target) != (level["min"], level["target"]):
            changes[item.sku] = {"from": [stock.min, stock.target],
                                 "to": [level["min"], level["target"]]}
        stock.min, stock.target = level["min"], level["target"]
        rows.append(stock)
    session.flush()
    if changes:
        events.record(session, outbox, "catalog.changed", {
            "entity": "levels", "code": warehouse.code, "action": "updated",
            "changes": changes})
    return {"levels": rows}


def stocktake(session: Session, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
    """Post an adjustment for every counted difference; what matches is left alone."""
    warehouse = catalog.get_warehouse(session, data["warehouse"], "warehouse")
    require(identity, "stocktake", warehouse)
    items, seen = [], set()
    for index, count in enumerate(data["counts"]):
        if count["item"] in seen:
            raise InvalidInput(f"counts.{index}: {count['item']} is counted twice",
                               errors={f"counts.{index}.item": ["counted twice"]})
        seen.add(count["item"])
        items.append(catalog.get_item(session, count["item"], f"counts.{index}.item"))
    expire_due(session)
    # Locked before they are read: what is counted against cannot change under the count.
    ids = ledger.lock_balances(session, [(warehouse, item) for item in items])
    differences = []
    reason = data.get("reason") or "stocktake"
    for index, (item, count) in enumerate(zip(items, data["counts"], strict=True)):
        field = f"counts.{index}"
        stock = session.get(Stock, ids[warehouse.id, item.id], populate_existing=True)
        expected, delta = stock.on_hand, count["counted"] - stock.on_hand
        if delta > 0:
            if item.perishable and not count.get("expires_on"):
                raise InvalidInput(f"{item.sku} is perishable: a surplus needs its expiry date",
                                   errors={f"{field}.expires_on": ["required for a perishable "
                                                                   "surplus"]})
            ledger.add_stock(session, warehouse, item, delta, ADJUSTMENT, identity.actor,
                             reason=reason, reference=data.get("reference"),
                             expires_on=count.get("expires_on"), lot=count.get("lot") or "")
        elif delta < 0:
            if count["counted"] < stock.reserved:
                raise InvalidInput(
                    f"{item.sku}: counted {count['counted']} but {stock.reserved} are held for "
                    "plans; release them first",
                    errors={f"{field}.counted": [f"below the {stock.reserved} held"]})
            ledger.remove_stock(session, warehouse, item, -delta, ADJUSTMENT, identity.actor,
                                reason=reason, reference=data.get("reference"),
                                from_reserved=False)
        if delta:
            differences.append({"item": item.sku, "expected": expected,
                                "counted": count["counted"], "difference": delta})
    return {"warehouse": warehouse.code, "differences": differences}
