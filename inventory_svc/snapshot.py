"""One read of everything a plan needs: every warehouse with its place in the tree and every
balance of the asked items, in columns (a plan over 2,660 depots is one call, not fifty pages).
Two queries, and no write: holds past their time are left out of `available` in the second, and
so is stock past its date (`expired`, still on hand until written off). `in_transit` is what
transfers not yet received bring to the balance, for restocking not to order it twice.

Every answer carries a `version`; asked again `since` it, the answer holds only what changed: the
balances the database stamped since (`Stock.changed`, set by a trigger on every write), those
whose holds ran out or whose lots reached their date meanwhile (changes by the clock, which no
write stamps), and only the warehouses added or changed (stamped the same way, `Warehouse.changed`),
each with its position in the full list. A caller that keeps the network (the allocation
service) reads a few rows per plan instead of the whole prefecture, however large the network.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    CompoundSelect,
    Date,
    DateTime,
    Select,
    bindparam,
    case,
    cast,
    func,
    select,
    text,
    union,
)
from sqlalchemy.orm import Session

from inventory_svc import shelf, stock
from inventory_svc.expiry import NOW, live_reserved
from inventory_svc.models import (
    Item,
    Lot,
    Reservation,
    ReservationLine,
    Stock,
    Transfer,
    TransferLine,
    Warehouse,
)
from inventory_svc.vocabulary import HELD, IN_TRANSIT
from shared.db import many_rows
from shared.errors import InvalidInput

# A change by the clock is looked for from a little before the last read: clocks of two
# instances may be apart by that much, and a row sent twice costs nothing.
CLOCK_MARGIN = timedelta(seconds=30)
SLICE = 50_000  # balances made Python rows at once in a full read


class Version:
    """Where a reader stands: the database's mark (PostgreSQL's snapshot, or SQLite's highest
    stamp), the time of the read, the warehouses it had (`Fleet`), and the catalogue's size."""

    def __init__(self, mark: str, at: datetime, warehouses: Fleet, items: int):
        self.mark, self.at, self.warehouses, self.items = mark, at, warehouses, items

    def __str__(self) -> str:
        return f"{self.mark}~{self.at.timestamp():.6f}~{self.warehouses}~{self.items}"

    @classmethod
    def parse(cls, raw: str) -> Version:
        try:
            mark, at, warehouses, items = raw.split("~")
            _check_mark(mark)
            return cls(mark, datetime.fromtimestamp(float(at), UTC), Fleet.parse(warehouses),
                       int(items))
        except (ValueError, OverflowError, OSError):
            raise InvalidInput("since: not a version this service gave",
                               errors={"since": ["not a version of a snapshot"]}) from None


@dataclass(frozen=True)
class Fleet:
    """The warehouses a reader has: how many, the highest id, the highest stamp (SQLite's
    mark for warehouses). Warehouses are never deleted and listed by id, so while no warehouse
    appears below `last` (a later insert that committed first), a reader's positions hold."""

    count: int
    last: int
    stamp: int

    def __str__(self) -> str:
        return f"{self.count}.{self.last}.{self.stamp}"

    @classmethod
    def parse(cls, raw: str) -> Fleet:
        parts = raw.split(".")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            raise ValueError(raw)
        return cls(*(int(part) for part in parts))


def _check_mark(mark: str) -> None:
    """A PostgreSQL snapshot (xmin:xmax:xip,...) or a whole number, nothing else."""
    if mark.isdigit():
        return
    xmin, xmax, running = mark.split(":")
    if not (xmin.isdigit() and xmax.isdigit()
            and all(x.isdigit() for x in running.split(",") if x)):
        raise ValueError(mark)


def snapshot(session: Session, items: list[str] | None, since: str | None = None,
             digest: bool = False) -> dict:
    """Everything (no `since`), or what changed since that version: nothing in it reads the
    whole network, but for a warehouse added (its position, once per process), and the
    `digest` when asked (sums in the database, under a second for a nation)."""
    before = Version.parse(since) if since else None
    mark, at = _mark(session)  # first: whatever is written after this is sent next time
    if before is not None and _behind(mark, before):
        before = None  # the database was replaced (restored, seeded anew): everything again
    fleet, warehouses = before.warehouses if before else None, None
    if before is not None:
        edited = _warehouses_changed(session, before)
        if edited:
            fleet = _fleet(session)
            if not _positions_hold(session, before.warehouses, fleet):
                before = None  # a warehouse gone, or one that came in below the last
            else:
                warehouses = _warehouses(session, Warehouse.id.in_(edited))
                positions = _positions(session, fleet)
                warehouses["position"] = [positions[wid] for wid in warehouses.pop("id")]
    if before is None:
        fleet = _fleet(session)
        warehouses = _warehouses(session)
        _remember(session, fleet, warehouses["id"])
        warehouses.pop("id")
    whole, bound = _balances(bool(items)), balances_bound(at, items)
    query = whole
    if before is not None:  # the changed ids first, each way by its index; then their balances
        changed = _changed_since(session, before, at)
        query = _balances(bool(items), changed=True) if changed else None
        bound["changed"] = changed
    columns = _columns(session, query, bound, whole=before is None)
    if columns[0]:
        position = _positions(session, fleet)
        columns[0] = [position[wid] for wid in columns[0]]
    catalogue = session.scalar(select(func.count(Item.id))) or 0
    answer = {
        "version": str(Version(mark, at, fleet, catalogue)),
        "full": before is None,
        "catalogue": catalogue,
        "warehouses": warehouses,
        "stock": dict(zip(STOCK_COLUMNS, columns, strict=True)),
    }
    if digest:
        answer["digest"] = _digest(session, whole, bound)
    return answer


def _digest(session: Session, balances: Select, bound: dict[str, Any]) -> dict[str, int]:
    """How many balances, and the sum of each number column, as the same read (its view, its
    clock) has them: what a reader's kept network must add up to."""
    rows = balances.order_by(None).subquery()
    numbers = STOCK_COLUMNS[2:]
    found = session.execute(select(func.count(), *(func.coalesce(func.sum(rows.c[name]), 0)
                                                   for name in numbers)), bound).one()
    return {"balances": int(found[0]), **{name: int(value)
                                          for name, value in zip(numbers, found[1:], strict=True)}}


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _mark(session: Session) -> tuple[str, datetime]:
    if _postgresql(session):
        mark = session.scalar(text("SELECT pg_current_snapshot()::text"))
    else:
        mark = str(session.scalar(select(func.coalesce(func.max(Stock.changed), 0))))
    return mark, datetime.now(UTC)


def _fleet(session: Session) -> Fleet:
    count, last, stamp = session.execute(select(
        func.count(Warehouse.id), func.coalesce(func.max(Warehouse.id), 0),
        func.coalesce(func.max(Warehouse.changed), 0))).one()
    return Fleet(count, last, stamp)


def _behind(mark: str, before: Version) -> bool:
    """Is the database's mark now older than the one given (or of another kind)?"""
    if mark.isdigit() != before.mark.isdigit():
        return True
    if mark.isdigit():
        return int(mark) < int(before.mark)
    return int(mark.split(":")[0]) < int(before.mark.split(":")[0])


def _positions_hold(session: Session, before: Fleet, now: Fleet) -> bool:
    """Does every warehouse the reader has keep its position: none gone, and every one added
    since listed after them (ids above the reader's last)?"""
    if now.count < before.count:
        return False
    added = session.scalar(select(func.count(Warehouse.id)).where(Warehouse.id > before.last))
    return added == now.count - before.count


def _columns(session: Session, query: Select | None, bound: dict[str, Any],
             whole: bool) -> list[list]:
    """The balances' columns, in the order of `_balances`' select, made a slice of rows at a
    time: a nation's 2.7 million never stand as rows all at once (half a GiB more). Only a
    whole read pauses the cycle collector: a `since` read is a few rows, and pausing it for
    every plan's would leave it paused while reads overlap."""
    columns: list[list] = [[] for _ in STOCK_COLUMNS]
    if query is None:
        return columns
    with many_rows() if whole else nullcontext():
        for part in session.connection().execute(query, bound).partitions(SLICE):
            for column, values in zip(columns, zip(*part, strict=True), strict=True):
                column.extend(values)
    return columns


def _warehouses(session: Session, where=None) -> dict[str, list]:
    query = select(Warehouse.id, Warehouse.code, Warehouse.level, Warehouse.path,
                   Warehouse.status, Warehouse.road_node).order_by(Warehouse.id)
    with many_rows() if where is None else nullcontext():
        rows = session.execute(query if where is None else query.where(where)).all()
    names = ("id", "code", "level", "path", "status", "road_node")
    if not rows:
        return {name: [] for name in names}
    return {name: list(column) for name, column in zip(names, zip(*rows, strict=True),
                                                          strict=True)}


def _warehouses_changed(session: Session, before: Version) -> list[int]:
    """The ids of the warehouses added or changed since `before` (by their index)."""
    if before.mark.isdigit():
        query = select(Warehouse.id).where(Warehouse.changed > before.warehouses.stamp)
        return list(session.scalars(query))
    return list(session.scalars(_WAREHOUSES_UNSEEN, _unseen_bound(before.mark)))


def _unseen(changed) -> tuple:
    """Rows written by a transaction the snapshot `:mark` (its xmin `:xmin`) did not see
    (PostgreSQL); bound by `_unseen_bound`."""
    return (changed >= bindparam("xmin", type_=BigInteger), text(
        f"NOT pg_visible_in_snapshot({changed.table.name}.changed::text::xid8, "
        "CAST(:mark AS pg_snapshot))"))


def _unseen_bound(mark: str) -> dict[str, Any]:
    return {"mark": mark, "xmin": int(mark.split(":")[0])}


_WAREHOUSES_UNSEEN = select(Warehouse.id).where(*_unseen(Warehouse.changed))


# database URL -> (the warehouses, {warehouse id: position in the list a full snapshot sends}),
# kept by each process: reading the ids anew would cost every snapshot a walk of the network.
_POSITIONS: dict[str, tuple[Fleet, dict[int, int]]] = {}


def _remember(session: Session, fleet: Fleet, ids: list[int]) -> None:
    _POSITIONS[str(session.get_bind().url)] = (fleet, {wid: i for i, wid in enumerate(ids)})


def _positions(session: Session, fleet: Fleet) -> dict[int, int]:
    """Each warehouse's position in the list a full snapshot sends, for these warehouses: the
    kept positions, extended by the warehouses added after them, or read anew."""
    database = str(session.get_bind().url)
    kept = _POSITIONS.get(database)
    if kept is not None and (kept[0].count, kept[0].last) == (fleet.count, fleet.last):
        return kept[1]
    if kept is not None and kept[0].last <= fleet.last:
        added = session.scalars(select(Warehouse.id).where(Warehouse.id > kept[0].last)
                                .order_by(Warehouse.id)).all()
        if kept[0].count + len(added) == fleet.count:
            positions = dict(kept[1])
            positions.update((wid, kept[0].count + i) for i, wid in enumerate(added))
            _POSITIONS[database] = (fleet, positions)
            return positions
    ids = session.scalars(select(Warehouse.id).order_by(Warehouse.id)).all()
    _remember(session, fleet, ids)
    return _POSITIONS[database][1]


STOCK_COLUMNS = ("warehouse", "item", "on_hand", "available", "expired", "in_transit", "min",
                 "target")


@functools.cache
def _balances(some_items: bool, changed: bool = False) -> Select:
    """The balances' read, built once (all items or `:items`; all balances or the `:changed`
    ids) and bound by `balances_bound` on each call: built anew (three subqueries), with the
    changed ids, a `since` read of 62 balances cost 5.2 ms of CPU, 2.6 this way."""
    overdue, reserved = live_reserved(NOW)
    past, expired = shelf.expired_stock(shelf.TODAY)
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
    if some_items:
        query = query.where(Item.sku.in_(bindparam("items", expanding=True)))
    if changed:
        query = query.where(Stock.id.in_(bindparam("changed", expanding=True)))
    return query


def balances_bound(at: datetime, items: list[str] | None) -> dict[str, Any]:
    """What `_balances` is read with: the clock of the read (holds past their time, lots past
    their date), and the items when some are asked."""
    return {**stock.as_of(at), **({"items": list(items)} if items else {})}


def _changed_since(session: Session, before: Version, now: datetime) -> list[int]:
    """The ids of the balances written since `before`, or changed by the clock: a hold that
    ran out, a lot that reached its date (each found by its index)."""
    bound = {"from": before.at - CLOCK_MARGIN, "until": now + CLOCK_MARGIN,
             "first_day": shelf.today(before.at - CLOCK_MARGIN) - timedelta(days=1),
             "last_day": shelf.today(now) + timedelta(days=1)}
    if before.mark.isdigit():
        bound["stamp"] = int(before.mark)
    else:
        bound.update(_unseen_bound(before.mark))
    return sorted(set(session.scalars(_changed_query(before.mark.isdigit()), bound).all()))


@functools.cache
def _changed_query(stamped: bool) -> CompoundSelect:
    """What `_changed_since` reads, built once for each kind of mark: SQLite's stamp, or a
    PostgreSQL snapshot (written by a transaction the earlier read did not see)."""
    if stamped:
        written = select(Stock.id).where(Stock.changed > bindparam("stamp", type_=BigInteger))
    else:
        written = select(Stock.id).where(*_unseen(Stock.changed))
    ran_out = (select(ReservationLine.stock_id)
               .join(Reservation, Reservation.id == ReservationLine.reservation_id)
               .where(Reservation.status == HELD,
                      Reservation.expires_at > bindparam("from", type_=DateTime(timezone=True)),
                      Reservation.expires_at <= bindparam("until",
                                                          type_=DateTime(timezone=True))))
    dated = (select(Lot.stock_id)
             .where(Lot.expires_on >= bindparam("first_day", type_=Date),
                    Lot.expires_on <= bindparam("last_day", type_=Date), Lot.on_hand > 0))
    return union(written, ran_out, dated)
