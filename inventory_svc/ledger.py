"""The stock ledger: every change of a balance is an immutable line written in the same
transaction, so that a balance always equals the sum of its lines and is never negative.

Stock leaves by a conditional UPDATE (`... WHERE on_hand - reserved >= q`): on PostgreSQL the row
lock it takes serialises concurrent issues of the same stock, and the lots below it are touched
only while that lock is held; on SQLite writers are serialised by BEGIN IMMEDIATE.

This is the hot path of the service, so it speaks SQL to the tables (no ORM unit of work): a
receipt or an issue is one statement for the balance, one or two for its lot, one for its
ledger line and one for its event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    Select,
    String,
    Update,
    bindparam,
    case,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from inventory_svc import catalog, shelf
from inventory_svc.expiry import expire_due
from inventory_svc.models import Item, Lot, Movement, Stock, Warehouse, outbox
from inventory_svc.permissions import require
from inventory_svc.vocabulary import ADJUSTMENT, ISSUE, TRANSFER_IN
from shared import events
from shared.auth import Identity
from shared.errors import Conflict, EmsupplyError, Forbidden, InvalidInput
from shared.i18n import _
from shared.sql import insert_for, locks_rows, value_rows

# The one sign rule of a movement's quantity. Shown as the field's description in the API.
QUANTITY_RULE = (
    "A whole number, never 0. In a request, a receipt or an issue gives how much, a positive "
    "number (its kind says which way the stock goes); an adjustment gives the change itself, "
    "negative to go down. The ledger's lines and every answer carry the signed change of the "
    "balance: + in, - out.")
STOCK, LOTS, MOVEMENTS = Stock.__table__, Lot.__table__, Movement.__table__
BALANCE = (STOCK.c.id, STOCK.c.on_hand, STOCK.c.reserved, STOCK.c.min, STOCK.c.target)


WRITE_OFF_REASON = "expired"  # the reason of every write-off line, for the stock card's reader


class InsufficientStock(Conflict):
    slug, title = "insufficient-stock", _("Not enough stock")


@dataclass
class Posted:
    """What one change did: its ledger lines and the balance after it."""

    warehouse: Warehouse
    item: Item
    kind: str
    quantity: int
    lines: list[Line]
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


def lock_balances(session: Session, pairs: Iterable[tuple[Warehouse, Item]]) -> dict:
    """Create the missing balance rows of `pairs` and lock them all, in the one order every
    command uses (rows created by warehouse then item, locked by id), so that two commands
    touching several balances never deadlock. Answers {(warehouse id, item id): stock id}."""
    unique = {(warehouse.id, item.id): (warehouse, item) for warehouse, item in pairs}
    ids = {key: stock_row(session, *unique[key]) for key in sorted(unique)}
    if ids and locks_rows(session):
        session.execute(select(Stock.id).where(Stock.id.in_(sorted(ids.values())))
                        .order_by(Stock.id).with_for_update())
    return ids


def touch(session: Session, pairs: set[tuple[int, int]]) -> None:
    """Stamp balances that changed without a write of their own (what is on the way to them),
    so that a snapshot read by what changed since finds them (`Stock.changed`)."""
    if pairs:
        session.execute(update(Stock).where(tuple_(Stock.warehouse_id, Stock.item_id)
                                            .in_(sorted(pairs)))
                        .values(changed=Stock.changed)
                        .execution_options(synchronize_session=False))


def lock_balances_by_code(session: Session, pairs: Iterable[tuple[str, str]],
                          field: str = "lines") -> dict[tuple[str, str], int]:
    """Lock the balances of many (warehouse code, sku) pairs at once, as a plan's hold names
    them: one statement for the whole set (the codes joined to their ids there), the rows
    locked in stock id order (the one lock order). A pair without a balance row has nothing to
    give and is left out of the answer (nothing is created: a hold on it is a shortfall).
    Unknown codes are 422 naming `field`, looked for only when a pair was not found.
    Answers {(code, sku): stock id}."""
    pairs = sorted(set(pairs))
    named = value_rows(session, "named", ("code", "sku"), pairs, (String, String))
    query = (select(Stock.id, named.c.code, named.c.sku).select_from(named)
             .join(Warehouse, Warehouse.code == named.c.code)
             .join(Item, Item.sku == named.c.sku)
             .join(Stock, (Stock.warehouse_id == Warehouse.id) & (Stock.item_id == Item.id))
             .order_by(Stock.id))
    if locks_rows(session):
        query = query.with_for_update(of=Stock)
    found = {(code, sku): stock_id for stock_id, code, sku in session.execute(query)}
    if len(found) < len(pairs):
        _known_codes(session, [pair for pair in pairs if pair not in found], field)
    return found


def _known_codes(session: Session, pairs: list[tuple[str, str]], field: str) -> None:
    """422 naming `field` if a warehouse or an item of `pairs` does not exist."""
    codes, skus = sorted({c for c, _ in pairs}), sorted({s for _, s in pairs})
    warehouses = set(session.scalars(select(Warehouse.code).where(Warehouse.code.in_(codes))))
    items = set(session.scalars(select(Item.sku).where(Item.sku.in_(skus))))
    for name, known, wanted in (("warehouse", warehouses, codes), ("item", items, skus)):
        unknown = [value for value in wanted if value not in known]
        if unknown:
            detail = f"no {name} {', '.join(map(repr, unknown[:10]))}"
            raise InvalidInput(detail, errors={f"{field}.{name}": [detail]})


# The statements of the hot path, built once and bound on each call.
_W, _I, _Q = bindparam("w"), bindparam("i"), bindparam("q")
_TAKE = {  # what the stock leaves from -> the guarded update that takes it out
    # An adjustment: any stock no hold needs, expired lots too (it corrects the count).
    "unheld": update(STOCK).where(STOCK.c.warehouse_id == _W, STOCK.c.item_id == _I,
                                  STOCK.c.on_hand - STOCK.c.reserved >= _Q)
    .values(on_hand=STOCK.c.on_hand - _Q).returning(*BALANCE),
    # An issue or a transfer: stock neither held nor past its date.
    "usable": update(STOCK).where(
        STOCK.c.warehouse_id == _W, STOCK.c.item_id == _I,
        STOCK.c.on_hand - STOCK.c.reserved - shelf.expired_in_balance(shelf.TODAY) >= _Q)
    .values(on_hand=STOCK.c.on_hand - _Q).returning(*BALANCE),
    # A hold committed: what it holds (its lots are checked for their date below).
    "held": update(STOCK).where(STOCK.c.warehouse_id == _W, STOCK.c.item_id == _I,
                                STOCK.c.reserved >= _Q)
    .values(on_hand=STOCK.c.on_hand - _Q, reserved=STOCK.c.reserved - _Q).returning(*BALANCE),
}
_BALANCE_NOW = select(*BALANCE).where(STOCK.c.warehouse_id == _W, STOCK.c.item_id == _I)
_EXPIRED_NOW = (select(LOTS.c.id, LOTS.c.lot, LOTS.c.expires_on, LOTS.c.on_hand)
                .where(LOTS.c.stock_id == bindparam("stock"), LOTS.c.on_hand > 0,
                       LOTS.c.expires_on < shelf.TODAY)
                .order_by(LOTS.c.expires_on, LOTS.c.id))


def _fefo(stock_id: Any, named: bool) -> Select:
    """The lots of a balance to take from, earliest expiry first (of one lot name if `named`).
    Lots dated before `fresh_from` are left where they are: an issue passes today, so that
    expired lots never leave as relief; an adjustment passes date.min, and takes any lot."""
    query = (select(LOTS.c.id, LOTS.c.lot, LOTS.c.expires_on, LOTS.c.on_hand)
             .where(LOTS.c.stock_id == stock_id, LOTS.c.on_hand > 0,
                    or_(LOTS.c.expires_on.is_(None),
                        LOTS.c.expires_on >= bindparam("fresh_from", type_=Date)))
             .order_by(case((LOTS.c.expires_on.is_(None), 1), else_=0), LOTS.c.expires_on,
                       LOTS.c.id))
    return query.where(LOTS.c.lot == bindparam("lot_name")) if named else query


def _take_first(stock_id: Any, named: bool) -> Update:
    """The usual case in one statement: the first lot in line holds enough. (The balance row
    is locked already, so its lots cannot change under this.)"""
    first = _fefo(stock_id, named).with_only_columns(LOTS.c.id).limit(1).scalar_subquery()
    return (update(LOTS).where(LOTS.c.id == first, LOTS.c.on_hand >= _Q)
            .values(on_hand=LOTS.c.on_hand - _Q).returning(LOTS.c.lot, LOTS.c.expires_on))


def _lot_join(stock_id: Any) -> Update:
    """Stock coming in joins its (lot, expiry) when it is here."""
    return (update(LOTS).where(LOTS.c.stock_id == stock_id, LOTS.c.lot == bindparam("lot_name"),
                               LOTS.c.expires_on.is_not_distinct_from(bindparam("expires")))
            .values(on_hand=LOTS.c.on_hand + _Q).returning(LOTS.c.lot, LOTS.c.expires_on))


_FEFO, _FEFO_OF_LOT = _fefo(bindparam("stock"), False), _fefo(bindparam("stock"), True)
_LOTS_OUT = {  # (named lot?, lock rows?) -> lots to take from, earliest expiry first
    (False, False): _FEFO, (True, False): _FEFO_OF_LOT,
    (False, True): _FEFO.with_for_update(), (True, True): _FEFO_OF_LOT.with_for_update()}
_TAKE_FIRST = {named: _take_first(bindparam("stock"), named) for named in (False, True)}
_LOT_JOIN = _lot_join(bindparam("stock"))
_LOT_TAKE = update(LOTS).where(LOTS.c.id == bindparam("lot_id")).values(
    on_hand=LOTS.c.on_hand - bindparam("take"))
_LOT_ADD = update(LOTS).where(LOTS.c.id == bindparam("lot_id")).values(
    on_hand=LOTS.c.on_hand + _Q)
_LOT_NEW = insert(LOTS)
_LOTS_NAMED = select(LOTS.c.id, LOTS.c.expires_on).where(LOTS.c.stock_id == bindparam("stock"),
                                                        LOTS.c.lot == bindparam("lot_name"))
_LOT_FIRST_NAMED = _LOTS_NAMED.order_by(LOTS.c.id).limit(1)
_LOT_UNDATED = _LOTS_NAMED.where(LOTS.c.expires_on.is_(None))
_LOT_DATED = _LOTS_NAMED.where(LOTS.c.expires_on == bindparam("expires"))
_LOT_OTHER_DATE = _LOTS_NAMED.where(LOTS.c.expires_on.is_not(None)).limit(1)
_LINES = insert(MOVEMENTS).returning(MOVEMENTS.c.id, sort_by_parameter_order=True)
_PUT = {}  # dialect -> the upsert that adds to a balance, creating it when missing


def _put(dialect: str):
    if dialect not in _PUT:
        from sqlalchemy.dialects import postgresql, sqlite

        upsert = (postgresql if dialect == "postgresql" else sqlite).insert(STOCK).values(
            warehouse_id=_W, item_id=_I, on_hand=_Q, reserved=0, min=0, target=0)
        _PUT[dialect] = upsert.on_conflict_do_update(
            index_elements=["warehouse_id", "item_id"],
            set_={"on_hand": STOCK.c.on_hand + upsert.excluded.on_hand}).returning(*BALANCE)
    return _PUT[dialect]


# A movement at once, on PostgreSQL (`_at_once`): the contended balance row is locked by the
# first part of the one statement that also takes the lot, writes the ledger line and the events,
# so that it is held for that statement, the request's key and the commit, not for three round
# trips more (many keepers on one depot's balance queue on that lock). What the usual case does
# not cover (the stock spread over several lots, a new lot) goes on in Python under the same lock.
_STRING = {name: bindparam(name, type_=String)
           for name in ("code", "sku", "kind", "actor", "event_actor", "reason", "reference")}
_AT = bindparam("at", type_=DateTime(timezone=True))
_SIGNED = bindparam("signed", type_=BigInteger)
_AT_ONCE: dict[tuple[str, bool], Select] = {}


def _at_once(direction: str, named: bool) -> Select:
    """The statement of `direction` ("in", or a `_TAKE` key for stock going out): one row of
    the balance after, the lot touched and the ledger line's id; the lot and line are None
    when the lot was not found (the caller goes on), no row when the stock is not there."""
    key = (direction, named)
    if key not in _AT_ONCE:
        balance = (_put("postgresql") if direction == "in" else _TAKE[direction]).cte("balance")
        stock_id = select(balance.c.id).scalar_subquery()
        lot = (_lot_join(stock_id) if direction == "in" else _take_first(stock_id, named)
               ).cte("lot")
        both = select().select_from(balance).join(lot, true())
        line = insert(MOVEMENTS).from_select(
            ["warehouse_id", "item_id", "kind", "quantity", "balance_after", "lot", "expires_on",
             "actor", "reason", "reference", "at"],
            both.add_columns(
                bindparam("line_warehouse", type_=BigInteger), bindparam("line_item",
                                                                       type_=BigInteger),
                _STRING["kind"], _SIGNED, balance.c.on_hand, lot.c.lot, lot.c.expires_on,
                _STRING["actor"], _STRING["reason"], _STRING["reference"], _AT)
        ).returning(MOVEMENTS.c.id).cte("line")
        data = ["warehouse", _STRING["code"], "item", _STRING["sku"], "kind", _STRING["kind"],
                "quantity", _SIGNED, "on_hand", balance.c.on_hand, "reserved",
                balance.c.reserved, "available", balance.c.on_hand - balance.c.reserved,
                "actor", _STRING["event_actor"]]
        changed = both.add_columns(literal("stock.changed"), _AT,
                                   func.json_build_object(*map(_json_part, data)))
        below = both.add_columns(literal("stock.below_min"), _AT, func.json_build_object(
            *map(_json_part, data + ["min", balance.c.min, "target", balance.c.target]))).where(
            balance.c.min > 0, balance.c.on_hand < balance.c.min,
            balance.c.min <= balance.c.on_hand - _SIGNED)
        # One INSERT, its rows in the order of the UNION ALL: the change, then the crossing.
        news = insert(outbox).from_select(["type", "at", "data"],
                                          union_all(changed, below)).cte("news")
        _AT_ONCE[key] = (select(*balance.c, lot.c.lot, lot.c.expires_on, line.c.id.label("line"))
                         .select_from(balance).outerjoin(lot, true()).outerjoin(line, true())
                         .add_cte(news))
    return _AT_ONCE[key]


def _json_part(part: Any) -> Any:
    return literal(part, String) if isinstance(part, str) else part


def _post_at_once(conn: Connection, direction: str, warehouse: Warehouse, item: Item,
                  signed: int, kind: str, actor: str, reason: str | None,
                  reference: str | None, **binds: Any) -> tuple[Any, Posted | None]:
    """Run `_at_once`: (the balance row or None, the movement Posted or None to go on)."""
    at = datetime.now(UTC)
    named = direction != "in" and binds.get("lot_name") is not None  # out of one named lot
    row = conn.execute(_at_once(direction, named),
                       {"w": warehouse.id, "i": item.id, "q": abs(signed),
                        "line_warehouse": warehouse.id, "line_item": item.id,
                        "code": warehouse.code, "sku": item.sku, "kind": kind, "signed": signed,
                        "actor": actor, "event_actor": events.current_actor(),
                        "reason": reason, "reference": reference, "at": at, **binds}).first()
    if row is None or row.line is None:
        return row, None
    line = Line(row.line, warehouse, item, kind, signed, row.on_hand, row.lot, row.expires_on,
                reason, reference, actor, at)
    return row, Posted(warehouse, item, kind, signed, [line], row.on_hand, row.reserved, row.min,
                       row.target)


@dataclass
class Line:
    """One ledger line as written; answered like a Movement read back from the ledger."""

    id: int
    warehouse: Warehouse
    item: Item
    kind: str
    quantity: int
    balance_after: int
    lot: str
    expires_on: date | None
    reason: str | None
    reference: str | None
    actor: str
    at: datetime


def _write_lines(conn: Connection, warehouse: Warehouse, item: Item, kind: str,
                 parts: list[tuple[int, int, str, date | None]], actor: str,
                 reason: str | None, reference: str | None) -> list[Line]:
    """Append ledger lines, `parts` of (quantity, balance after, lot, expiry), in one statement."""
    at = datetime.now(UTC)
    rows = [{"warehouse_id": warehouse.id, "item_id": item.id, "kind": kind, "quantity": q,
             "balance_after": balance, "lot": lot, "expires_on": expires_on, "actor": actor,
             "reason": reason, "reference": reference, "at": at}
            for q, balance, lot, expires_on in parts]
    ids = conn.execute(_LINES, rows).scalars().all()
    return [Line(line_id, warehouse, item, kind, q, balance, lot, expires_on, reason, reference,
                 actor, at) for line_id, (q, balance, lot, expires_on) in zip(ids, parts,
                                                                              strict=True)]


def add_stock(session: Session, warehouse: Warehouse, item: Item, quantity: int, kind: str,
              actor: str, *, lot: str = "", expires_on: date | None = None,
              reason: str | None = None, reference: str | None = None) -> Posted:
    """Put `quantity` in, into the lot of that name and expiry.

    Stock is kept by (lot, expiry): unnamed stock of two expiry dates stays two parts, so that
    it still leaves earliest expiry first. A named lot given without a date is the lot of that
    name already here; a receipt naming a lot here with another date is refused as a likely
    mistake, but a transfer arriving brings its lots as they left.
    """
    if item.perishable and expires_on is None:
        raise InvalidInput(f"{item.sku} is perishable: stock coming in needs its expiry date",
                           errors={"expires_on": ["required for perishable items"]})
    conn = session.connection()
    usual = expires_on is not None or not lot  # the lot is known by its name and date
    joined = None
    if usual and conn.dialect.name == "postgresql":
        row, posted = _post_at_once(conn, "in", warehouse, item, quantity, kind, actor, reason,
                                    reference, lot_name=lot, expires=expires_on)
        if posted is not None:
            return posted
    else:
        row = conn.execute(_put(conn.dialect.name), {"w": warehouse.id, "i": item.id,
                                                     "q": quantity}).one()
        if usual:  # the usual case, in one statement
            joined = conn.execute(_LOT_JOIN, {"stock": row.id, "lot_name": lot,
                                              "expires": expires_on, "q": quantity}).first()
    if joined is None:
        existing = _lot_for(conn, row.id, lot, expires_on, kind)
        if existing is None:
            conn.execute(_LOT_NEW, {"stock_id": row.id, "lot": lot, "expires_on": expires_on,
                                    "on_hand": quantity})
        else:
            expires_on = existing.expires_on
            conn.execute(_LOT_ADD, {"lot_id": existing.id, "q": quantity})
    lines = _write_lines(conn, warehouse, item, kind, [(quantity, row.on_hand, lot, expires_on)],
                         actor, reason, reference)
    posted = Posted(warehouse, item, kind, quantity, lines, row.on_hand, row.reserved, row.min,
                    row.target)
    _changed(conn, posted, row.on_hand - quantity)
    return posted


def _lot_for(conn: Connection, stock_id: int, lot: str, expires_on: date | None, kind: str):
    """The lot row stock coming in joins (id, expires_on), or None for a new one."""
    named = {"stock": stock_id, "lot_name": lot}
    if lot and expires_on is None:
        return conn.execute(_LOT_FIRST_NAMED, named).first()
    if expires_on is None:
        existing = conn.execute(_LOT_UNDATED, named).first()
    else:
        existing = conn.execute(_LOT_DATED, {**named, "expires": expires_on}).first()
    if existing is None and lot and kind != TRANSFER_IN:
        other = conn.execute(_LOT_OTHER_DATE, named).first()
        if other is not None:
            raise InvalidInput(f"lot {lot!r} already expires on {other.expires_on}",
                               errors={"expires_on": [f"lot {lot!r} expires on "
                                                      f"{other.expires_on}"]})
    return existing


def remove_stock(session: Session, warehouse: Warehouse, item: Item, quantity: int, kind: str,
                 actor: str, *, lot: str | None = None, reason: str | None = None,
                 reference: str | None = None, from_reserved: bool = False) -> Posted:
    """Take `quantity` out, earliest expiry first (or from one named lot).

    `from_reserved` takes stock that a reservation holds; otherwise only what is available.
    Stock that leaves as relief (anything but an adjustment) leaves only from lots within
    their date; what only expired lots could give is refused, naming how much is expired.
    """
    conn = session.connection()
    balance = {"w": warehouse.id, "i": item.id}
    day = shelf.today()
    fresh_from = date.min if kind == ADJUSTMENT else day
    take = "held" if from_reserved else "unheld" if kind == ADJUSTMENT else "usable"
    if conn.dialect.name == "postgresql":
        row, posted = _post_at_once(conn, take, warehouse, item, -quantity, kind, actor, reason,
                                    reference, today=day, fresh_from=fresh_from, lot_name=lot)
        if posted is not None:
            return posted
    else:
        row = conn.execute(_TAKE[take], {**balance, "q": quantity, "today": day}).first()
    if row is None:
        raise _refusal(conn, warehouse, item, quantity, kind != ADJUSTMENT)
    parts = _take_from_lots(conn, row.id, quantity, lot, row.on_hand, fresh_from)
    if parts is None and from_reserved and lot is None:  # held stock expired since the hold
        expired = sum(each.on_hand for each in _expired_lots(conn, row.id))
        raise InsufficientStock(
            _("%(asked)s %(unit)s of %(item)s are held at %(warehouse)s, but %(expired)s "
              "%(unit)s of its stock are past their expiry date", asked=quantity,
              unit=item.unit, item=item.sku, warehouse=warehouse.code, expired=expired),
            extra={"requested": quantity, "warehouse": warehouse.code, "item": item.sku,
                   "expired": expired})
    if parts is None and lot is None:  # lots expired since the balance was read
        raise _refusal(conn, warehouse, item, quantity, True)
    if parts is None:
        raise InsufficientStock(_("lot %(lot)r of %(item)s at %(warehouse)s holds less than "
                                  "the %(asked)s asked", lot=lot, item=item.sku,
                                  warehouse=warehouse.code, asked=quantity),
                                extra={"requested": quantity, "warehouse": warehouse.code,
                                       "item": item.sku, "lot": lot,
                                       "available": _lot_available(conn, row.id, lot,
                                                                   fresh_from)})
    lines = _write_lines(conn, warehouse, item, kind, parts, actor, reason, reference)
    posted = Posted(warehouse, item, kind, -quantity, lines, row.on_hand, row.reserved, row.min,
                    row.target)
    _changed(conn, posted, row.on_hand + quantity)
    return posted


def _refusal(conn: Connection, warehouse: Warehouse, item: Item, asked: int,
             usable_only: bool) -> InsufficientStock:
    """The 409 of stock that cannot leave: what is available, and how much more is on the
    shelf but past its date when that is what stands in the way."""
    row = conn.execute(_BALANCE_NOW, {"w": warehouse.id, "i": item.id}).first()
    expired = 0
    if row is not None and usable_only:
        expired = sum(each.on_hand for each in _expired_lots(conn, row.id))
    available = shelf.usable(row.on_hand, row.reserved, expired) if row is not None else 0
    extra = {"available": available, "requested": asked, "warehouse": warehouse.code,
             "item": item.sku}
    if expired and available < asked:
        return InsufficientStock(
            _("%(warehouse)s has %(available)s %(unit)s of %(item)s available, %(asked)s "
              "asked; %(expired)s %(unit)s more are past their expiry date",
              warehouse=warehouse.code, available=available, unit=item.unit, item=item.sku,
              asked=asked, expired=expired), extra={**extra, "expired": expired})
    return InsufficientStock(
        _("%(warehouse)s has %(available)s %(unit)s of %(item)s available, %(asked)s asked",
          warehouse=warehouse.code, available=available, unit=item.unit, item=item.sku,
          asked=asked), extra=extra)


def _expired_lots(conn: Connection, stock_id: int) -> list:
    """The lots of a balance past their date, with stock in them, earliest first."""
    return conn.execute(_EXPIRED_NOW, {"stock": stock_id, "today": shelf.today()}).all()


def _take_from_lots(conn: Connection, stock_id: int, quantity: int, lot: str | None,
                    on_hand: int,
                    fresh_from: date) -> list[tuple[int, int, str, date | None]] | None:
    """Take `quantity` from the lots of a (locked) balance dated `fresh_from` or later,
    earliest expiry first; the parts taken as (quantity, balance after, lot, expiry), or None
    when those lots hold too little."""
    named = lot is not None
    first = conn.execute(_TAKE_FIRST[named], {"stock": stock_id, "lot_name": lot,
                                              "q": quantity, "fresh_from": fresh_from}).first()
    if first is not None:  # the usual case: the first lot in line holds enough
        return [(-quantity, on_hand, first.lot, first.expires_on)]
    lots = _LOTS_OUT[named, conn.dialect.name == "postgresql"]
    parts, taken, remaining, after = [], [], quantity, on_hand + quantity
    for each in conn.execute(lots, {"stock": stock_id, "lot_name": lot,
                                    "fresh_from": fresh_from}):
        take = min(each.on_hand, remaining)
        after -= take
        remaining -= take
        taken.append({"lot_id": each.id, "take": take})
        parts.append((-take, after, each.lot, each.expires_on))
        if remaining == 0:
            break
    if remaining:
        return None
    conn.execute(_LOT_TAKE, taken)
    return parts


def _lot_available(conn: Connection, stock_id: int, lot: str | None, fresh_from: date) -> int:
    lots = _LOTS_OUT[lot is not None, False]
    return sum(each.on_hand for each in conn.execute(lots, {"stock": stock_id, "lot_name": lot,
                                                            "fresh_from": fresh_from}))


def write_off(session: Session, identity: Identity, data: dict[str, Any]) -> Posted:
    """Take every expired lot of a balance (or the named lot's expired part) off the shelf:
    one adjustment line a lot, reason "expired". What is still within its date is left alone,
    and nothing expired is nothing to do (answered with no lines). Stock a hold still needs is
    not written off: the hold is released (or committed) first."""
    warehouse, item = catalog.get_warehouse_and_item(session, data["warehouse"], data["item"])
    require(identity, "stock.write_off", warehouse)
    expire_due(session)
    stock_id = lock_balances(session, [(warehouse, item)])[warehouse.id, item.id]
    conn = session.connection()
    lots = [each for each in _expired_lots(conn, stock_id)
            if data.get("lot") is None or each.lot == data["lot"]]
    total = sum(each.on_hand for each in lots)
    if not total:
        row = conn.execute(_BALANCE_NOW, {"w": warehouse.id, "i": item.id}).one()
        return Posted(warehouse, item, ADJUSTMENT, 0, [], row.on_hand, row.reserved, row.min,
                      row.target)
    row = conn.execute(_TAKE["unheld"], {"w": warehouse.id, "i": item.id, "q": total}).first()
    if row is None:
        held = conn.execute(_BALANCE_NOW, {"w": warehouse.id, "i": item.id}).one().reserved
        raise Conflict(_("%(held)s %(unit)s of %(item)s at %(warehouse)s are held for plans: "
                         "release them before writing off the %(expired)s expired",
                         held=held, unit=item.unit, item=item.sku, warehouse=warehouse.code,
                         expired=total), extra={"reserved": held, "expired": total})
    conn.execute(_LOT_TAKE, [{"lot_id": each.id, "take": each.on_hand} for each in lots])
    parts, after = [], row.on_hand + total
    for each in lots:
        after -= each.on_hand
        parts.append((-each.on_hand, after, each.lot, each.expires_on))
    lines = _write_lines(conn, warehouse, item, ADJUSTMENT, parts, identity.actor,
                         WRITE_OFF_REASON, data.get("reference"))
    posted = Posted(warehouse, item, ADJUSTMENT, -total, lines, row.on_hand, row.reserved,
                    row.min, row.target)
    _changed(conn, posted, row.on_hand + total)
    return posted


def _changed(conn: Connection, posted: Posted, before: int) -> None:
    data = {"warehouse": posted.warehouse.code, "item": posted.item.sku, "kind": posted.kind,
            "quantity": posted.quantity, "on_hand": posted.on_hand, "reserved": posted.reserved,
            "available": posted.available}
    events.record(conn, outbox, "stock.changed", data)
    if posted.min and posted.on_hand < posted.min <= before:
        events.record(conn, outbox, "stock.below_min", {**data, "min": posted.min,
                                                        "target": posted.target})


def quantity_error(kind: str, quantity: int) -> str | None:
    """What breaks QUANTITY_RULE in a requested movement's quantity, or None."""
    if quantity == 0:
        return "must not be 0"
    if quantity < 0 and kind != ADJUSTMENT:
        return f"must be positive for a {kind} (only an adjustment gives a signed change)"
    return None


def apply(session: Session, identity: Identity, line: dict[str, Any]) -> Posted:
    """One movement of the contract (receipt, issue or adjustment) by a keeper in scope."""
    kind, quantity = line["kind"], line["quantity"]
    problem = quantity_error(kind, quantity)
    if problem:
        raise InvalidInput(f"quantity {problem}", errors={"quantity": [problem]})
    warehouse, item = catalog.get_warehouse_and_item(session, line["warehouse"], line["item"])
    require(identity, "stock.move", warehouse)
    common = {"reason": line.get("reason"), "reference": line.get("reference")}
    if kind == ADJUSTMENT and not common["reason"]:
        raise InvalidInput("an adjustment needs a reason", errors={"reason": ["required for "
                                                                              "adjustments"]})
    if kind == ISSUE or quantity < 0:
        return remove_stock(session, warehouse, item, abs(quantity), kind, identity.actor,
                            lot=line.get("lot"), **common)
    return add_stock(session, warehouse, item, quantity, kind, identity.actor,
                     lot=line.get("lot") or "", expires_on=line.get("expires_on"), **common)


def post_movement(session: Session, identity: Identity, data: dict[str, Any]) -> Posted:
    """One movement. Stock held by a reservation whose time is up is freed and the movement
    tried again, so that an expired hold never stands in the way."""
    try:
        return apply(session, identity, data)
    except InsufficientStock:
        if not expire_due(session):
            raise
    return apply(session, identity, data)


def post_batch(session: Session, identity: Identity, data: dict[str, Any]) -> dict[str, Any]:
    """Several movements, all or none: the first failure rolls back the whole batch."""
    expire_due(session)
    pairs = []
    for index, line in enumerate(data["lines"]):
        try:
            pairs.append((catalog.get_warehouse(session, line["warehouse"], "warehouse"),
                          catalog.get_item(session, line["item"], "item")))
        except InvalidInput as exc:
            raise _in_line(exc, index) from None
    lock_balances(session, pairs)
    results = []
    for index, line in enumerate(data["lines"]):
        try:
            results.append(apply(session, identity, line))
        except (InvalidInput, Conflict, Forbidden) as exc:
            raise _in_line(exc, index) from None
    return {"lines": results}


def _in_line(exc: EmsupplyError, index: int) -> EmsupplyError:
    exc.detail = f"line {index}: {exc.detail}"
    if exc.errors:
        exc.errors = {f"lines.{index}.{k}": v for k, v in exc.errors.items()}
    exc.extra = {**exc.extra, "line": index}
    return exc


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
