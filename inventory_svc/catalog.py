"""The four-level warehouse tree and the item catalogue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inventory_svc.models import Item, Warehouse, outbox
from inventory_svc.permissions import require
from inventory_svc.vocabulary import ACTIVE, PARENT_LEVEL, PREFECTURE
from shared import events
from shared.auth import Identity
from shared.errors import Conflict, InvalidInput, NotFound
from shared.i18n import _
from shared.schemas import CODE


def get_warehouse(session: Session, code: str, field: str | None = None) -> Warehouse:
    """The warehouse of `code`: 404 when named in the path, 422 naming `field` in a body."""
    warehouse = None
    if CODE.regex.match(code):  # anything else names nothing (and may not even be storable)
        warehouse = session.scalar(select(Warehouse).where(Warehouse.code == code))
    if warehouse is None:
        _missing(_("no warehouse with code %(code)r", code=code), field)
    return warehouse


def get_item(session: Session, sku: str, field: str | None = None) -> Item:
    item = None
    if CODE.regex.match(sku):
        item = session.scalar(select(Item).where(Item.sku == sku))
    if item is None:
        _missing(_("no item with sku %(sku)r", sku=sku), field)
    return item


@dataclass(frozen=True)
class WarehouseRef:
    """What a movement needs of a warehouse: where it is in the tree."""

    id: int
    code: str
    path: str


@dataclass(frozen=True)
class ItemRef:
    """What a movement needs of an item."""

    id: int
    sku: str
    unit: str
    perishable: bool


_REFS = (select(Warehouse.id, Warehouse.code, Warehouse.path, Item.id.label("item_id"),
                Item.sku, Item.unit, Item.perishable)
         .join(Item, Item.sku == bindparam("sku")).where(Warehouse.code == bindparam("code")))


def get_warehouse_and_item(session: Session, code: str,
                           sku: str) -> tuple[WarehouseRef | Warehouse, ItemRef | Item]:
    """Both in one light query (the hot path of every movement), or the error naming what is
    missing, as `get_warehouse` and `get_item` would raise it."""
    found = None
    if CODE.regex.match(code) and CODE.regex.match(sku):
        found = session.connection().execute(_REFS, {"code": code, "sku": sku}).first()
    if found is None:  # one is missing: say which (or both were made since: use them)
        return get_warehouse(session, code, "warehouse"), get_item(session, sku, "item")
    return (WarehouseRef(found.id, found.code, found.path),
            ItemRef(found.item_id, found.sku, found.unit, found.perishable))


def _missing(detail: str, field: str | None) -> None:
    if field is None:
        raise NotFound(detail)
    raise InvalidInput(detail, errors={field: [detail]})


def _parent_for(session: Session, level: str, parent_code: str | None) -> Warehouse | None:
    expected = PARENT_LEVEL.get(level)
    if expected is None:
        if parent_code:
            raise InvalidInput("the prefecture depot has no parent",
                               errors={"parent": ["must be empty for level prefecture"]})
        return None
    if not parent_code:
        raise InvalidInput(f"a {level} needs a parent of level {expected}",
                           errors={"parent": [f"required: a {expected} code"]})
    parent = get_warehouse(session, parent_code, "parent")
    if parent.level != expected:
        raise InvalidInput(f"the parent of a {level} must be a {expected}, not a {parent.level}",
                           errors={"parent": [f"must be a {expected}, {parent_code} is a "
                                              f"{parent.level}"]})
    return parent


def create_warehouse(session: Session, identity: Identity, data: dict[str, Any]) -> Warehouse:
    require(identity, "warehouses.write")
    parent = _parent_for(session, data["level"], data.get("parent"))
    if parent is None and session.scalar(
            select(func.count()).where(Warehouse.level == PREFECTURE)):
        raise Conflict("there is already a prefecture depot", errors={"level": ["only one"]})
    now = datetime.now(UTC)
    warehouse = Warehouse(
        code=data["code"], name=data["name"], name_zh=data.get("name_zh"),
        level=data["level"], parent=parent,
        path=(parent.path if parent else "/") + data["code"] + "/",
        status=data.get("status", ACTIVE), lon=data.get("lon"), lat=data.get("lat"),
        road_node=data.get("road_node"), created_at=now, updated_at=now)
    session.add(warehouse)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"warehouse {data['code']!r} already exists",
                       errors={"code": ["already exists"]}) from None
    return warehouse


def update_warehouse(session: Session, identity: Identity, code: str,
                     data: dict[str, Any]) -> Warehouse:
    """Change a warehouse; what changed (from, to) is published as `catalog.changed`."""
    require(identity, "warehouses.write")
    warehouse = get_warehouse(session, code)
    changes: dict[str, dict[str, Any]] = {}
    before = warehouse.parent.code if warehouse.parent else None
    if "parent" in data and (data["parent"] or None) != before:
        parent = _parent_for(session, warehouse.level, data["parent"])
        old_path = warehouse.path
        new_path = parent.path + warehouse.code + "/"
        session.execute(update(Warehouse)
                        .where(Warehouse.path.startswith(old_path, autoescape=True))
                        .values(path=func.replace(Warehouse.path, old_path, new_path))
                        .execution_options(synchronize_session=False))
        session.expire(warehouse, ["path"])  # rewritten by the statement above
        warehouse.parent = parent  # the relationship, not parent_id: it is what is answered
        changes["parent"] = {"from": before, "to": parent.code}
    for key in ("name", "name_zh", "status", "lon", "lat", "road_node"):
        if key in data and data[key] != getattr(warehouse, key):
            changes[key] = {"from": getattr(warehouse, key), "to": data[key]}
            setattr(warehouse, key, data[key])
    warehouse.updated_at = datetime.now(UTC)
    session.flush()
    if changes:
        events.record(session, outbox, "catalog.changed", {
            "entity": "warehouse", "code": warehouse.code, "action": "updated",
            "changes": changes})
    return warehouse


def list_warehouses(session: Session, level: str | None, parent: str | None,
                    status: str | None, limit: int, after: int) -> list[Warehouse]:
    query = select(Warehouse).where(Warehouse.id > after).order_by(Warehouse.id).limit(limit)
    if level:
        query = query.where(Warehouse.level == level)
    if status:
        query = query.where(Warehouse.status == status)
    if parent:
        query = query.where(Warehouse.parent_id == get_warehouse(session, parent, "parent").id)
    return list(session.scalars(query))


def create_item(session: Session, identity: Identity, data: dict[str, Any]) -> Item:
    require(identity, "items.write")
    item = Item(**data)
    session.add(item)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"item {data['sku']!r} already exists",
                       errors={"sku": ["already exists"]}) from None
    return item


def list_items(session: Session, limit: int, after: int) -> list[Item]:
    return list(session.scalars(select(Item).where(Item.id > after).order_by(Item.id)
                                .limit(limit)))
