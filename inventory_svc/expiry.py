"""Holds whose time is up. A hold past its `expires_at` is as good as gone at once: reads count its
stock as free (`live_reserved`), and the background worker frees it for good a few seconds later
(`expire_holds`). A write that needs stock does not wait for the worker: it frees whatever is due
in its own transaction first (`expire_due`), so that a dead hold never refuses it.

Nothing here knows the ledger; the ledger and reservations both use it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Subquery,
    bindparam,
    cast,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from inventory_svc.models import Reservation, ReservationLine, Stock
from inventory_svc.vocabulary import EXPIRED, HELD
from shared.db import Database
from shared.sql import locks_rows, value_rows

# The time of a read in statements built once and bound on each call.
NOW = bindparam("now", type_=DateTime(timezone=True))


def live_reserved(now: datetime | ColumnElement | None = None
                  ) -> tuple[Subquery, ColumnElement[int]]:
    """What a read answers as reserved: `Stock.reserved` less what holds past their time still
    hold in it. Answers the expression and the subquery (stock_id, quantity) it reads, to be
    outer-joined on `stock_id == Stock.id` in the read's own query; the subquery is found by the
    (status, expires_at) index and is empty when the worker keeps up."""
    if now is None:  # (not `or`: a bound parameter has no truth value)
        now = datetime.now(UTC)
    overdue = (select(ReservationLine.stock_id,  # a bigint sum is numeric on PostgreSQL
                      cast(func.sum(ReservationLine.quantity), BigInteger).label("quantity"))
               .join(Reservation, Reservation.id == ReservationLine.reservation_id)
               .where(Reservation.status == HELD, Reservation.expires_at <= now)
               .group_by(ReservationLine.stock_id).subquery("overdue"))
    return overdue, Stock.reserved - func.coalesce(overdue.c.quantity, 0)


def is_overdue(reservation: Reservation, now: datetime | None = None) -> bool:
    """Still held though its time is up (freed at the next write or by the worker)."""
    expires_at = reservation.expires_at
    if expires_at.tzinfo is None:  # SQLite gives back naive UTC
        expires_at = expires_at.replace(tzinfo=UTC)
    return reservation.status == HELD and expires_at <= (now or datetime.now(UTC))


def expire_due(session: Session, now: datetime | None = None) -> int:
    """Free every hold whose time is up, in the caller's transaction. Cheap when there is none
    (an indexed look-up of ids, a statement built once: loading the holds as ORM objects was a
    millisecond of CPU on every plan's hold, for nothing); on PostgreSQL, holds another
    transaction is freeing are skipped."""
    due = list(session.scalars(_DUE[locks_rows(session)], {"now": now or datetime.now(UTC)}))
    if not due:
        return 0
    expired = list(session.scalars(select(Reservation).where(Reservation.id.in_(due))))
    freed: dict[int, int] = {}
    for reservation in expired:
        for line in reservation.lines:
            freed[line.stock_id] = freed.get(line.stock_id, 0) + line.quantity
        expire(reservation)
    free(session, freed)  # all balances at once, in stock order: no deadlock with others
    session.flush()
    return len(expired)


_DUE_IDS = (select(Reservation.__table__.c.id)
            .where(Reservation.__table__.c.status == HELD,
                   Reservation.__table__.c.expires_at <= NOW))
_DUE = {False: _DUE_IDS,  # locks_rows -> the statement; those being freed elsewhere skipped
        True: _DUE_IDS.with_for_update(skip_locked=True)}


def expire_holds(db: Database) -> int:
    """Free every hold whose time is up, in a unit of work of its own: the background worker's
    call, every few seconds. Answers how many holds it freed."""
    with db.unit_of_work() as session:
        return expire_due(session)


def free(session: Session, quantities: dict[int, int]) -> None:
    """Lower `reserved` by {stock id: quantity}: the rows locked in stock id order (the one
    lock order), then all lowered in one statement, whatever the number of lines."""
    wanted = {stock_id: q for stock_id, q in quantities.items() if q}
    if not wanted:
        return
    freed = value_rows(session, "freed", ("stock_id", "quantity"), sorted(wanted.items()))
    if locks_rows(session):
        session.execute(select(Stock.id).join(freed, Stock.id == freed.c.stock_id)
                        .order_by(Stock.id).with_for_update(of=Stock))
    session.execute(update(Stock).where(Stock.id == freed.c.stock_id)
                    .values(reserved=Stock.reserved - freed.c.quantity)
                    .execution_options(synchronize_session=False))


def expire(reservation: Reservation) -> Reservation:
    """Mark a hold expired, closed when its time ran out (not when someone noticed): a read
    before the worker's pass and one after show the same."""
    reservation.status = EXPIRED
    reservation.closed_at = reservation.expires_at
    return reservation
