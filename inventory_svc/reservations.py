"""All-or-none holds on stock for a plan: made at once, committed into issues at dispatch,
released on cancel, and freed by themselves when their time to live runs out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from inventory_svc import ledger
from inventory_svc.models import Item, Reservation, ReservationLine, Stock, Warehouse
from shared.auth import Identity
from shared.errors import Conflict, InvalidInput, NotFound

HELD, COMMITTED, RELEASED, EXPIRED = "held", "committed", "released", "expired"
MAX_ID = 2**63 - 1
ROLES = ("admin", "service", "integration")


class Shortfall(Conflict):
    slug, title = "shortfall", "Not enough stock to hold"


def create_reservation(session: Session, identity: Identity, data: dict[str, Any],
                       ttl_s: int) -> Reservation:
    identity.require(*ROLES)
    expire_due(session)
    wanted: dict[tuple[str, str], int] = {}
    for line in data["lines"]:
        key = (line["warehouse"], line["item"])
        wanted[key] = wanted.get(key, 0) + line["quantity"]
    ids = ledger.lock_balances_by_code(session, wanted)
    rows = sorted((ids[code, sku], code, sku, quantity)
                  for (code, sku), quantity in wanted.items())
    # Every line in one guarded UPDATE (the rows are locked already): a line is held only where
    # its balance has the quantity available; the lines it does not return are the shortfalls.
    asked = case({stock_id: quantity for stock_id, _c, _s, quantity in rows}, value=Stock.id)
    held = set(session.scalars(
        update(Stock).where(Stock.id.in_([row[0] for row in rows]),
                            Stock.on_hand - Stock.reserved >= asked)
        .values(reserved=Stock.reserved + asked).returning(Stock.id)
        .execution_options(synchronize_session=False)))
    shortfalls = []
    for stock_id, code, sku, quantity in rows:
        if stock_id not in held:
            available = session.scalar(select(Stock.on_hand - Stock.reserved)
                                       .where(Stock.id == stock_id))
            shortfalls.append({"warehouse": code, "item": sku, "requested": quantity,
                               "available": available, "short": quantity - available})
    if shortfalls:
        raise Shortfall(f"{len(shortfalls)} line(s) cannot be held: " + "; ".join(
            f"{s['warehouse']} {s['item']} short {s['short']}" for s in shortfalls),
            extra={"shortfalls": shortfalls})
    now = datetime.now(UTC)
    ttl = data.get("ttl_seconds") or ttl_s
    reservation = Reservation(status=HELD, reference=data.get("reference"),
                              created_by=identity.actor, created_at=now,
                              expires_at=now + timedelta(seconds=ttl))
    # The answer names each line's warehouse and item: load them in one query, not one a line.
    stocks = {stock.id: stock for stock in session.scalars(
        select(Stock).where(Stock.id.in_([row[0] for row in rows])))}
    reservation.lines = [ReservationLine(stock=stocks[stock_id], quantity=quantity)
                         for stock_id, _code, _sku, quantity in rows]
    session.add(reservation)
    session.flush()
    return reservation


def get_reservation(session: Session, reservation_id: int, *, lock: bool = False) -> Reservation:
    if not 0 < reservation_id <= MAX_ID:
        raise NotFound(f"no reservation {reservation_id}")
    query = select(Reservation).where(Reservation.id == reservation_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Reservation)
    reservation = session.scalar(query)
    if reservation is None:
        raise NotFound(f"no reservation {reservation_id}")
    return reservation


def show_reservation(session: Session, identity: Identity, reservation_id: int) -> Reservation:
    expire_due(session)
    return get_reservation(session, reservation_id)


def commit_reservation(session: Session, identity: Identity, reservation_id: int) -> Reservation:
    """Turn the hold into issues (stock leaves the depots), earliest expiry first."""
    identity.require(*ROLES)
    reservation = _open(session, reservation_id)
    for line in reservation.lines:
        if not line.quantity:  # released in part down to nothing: nothing leaves
            continue
        ledger.remove_stock(session, session.get(Warehouse, line.stock.warehouse_id),
                            session.get(Item, line.stock.item_id), line.quantity, "issue",
                            identity.actor, reason="reservation committed",
                            reference=reservation.reference or f"reservation:{reservation.id}",
                            from_reserved=True)
    return _close(reservation, COMMITTED)


def release_reservation(session: Session, identity: Identity, reservation_id: int,
                        data: dict[str, Any] | None = None) -> Reservation:
    """Free the hold, or only the `lines` given (a plan re-sourcing a shipment cut off)."""
    identity.require(*ROLES)
    reservation = get_reservation(session, reservation_id, lock=True)
    if reservation.status in (RELEASED, EXPIRED):
        return reservation
    if reservation.status == COMMITTED:
        raise Conflict(f"reservation {reservation_id} was committed; its stock has left")
    parts = (data or {}).get("lines")
    if not parts:
        _unhold(session, reservation)
        return _close(reservation, RELEASED)
    by_key = {(line.stock.warehouse.code, line.stock.item.sku): line
              for line in reservation.lines}
    freed: dict[int, int] = {}
    for index, part in enumerate(parts):
        line = by_key.get((part["warehouse"], part["item"]))
        if line is None or part["quantity"] > line.quantity:
            raise InvalidInput(f"line {index}: reservation {reservation_id} does not hold "
                               f"{part['quantity']} {part['item']} at {part['warehouse']}",
                               errors={f"lines.{index}.quantity": ["more than is held"]})
        freed[line.stock_id] = freed.get(line.stock_id, 0) + part["quantity"]
        line.quantity -= part["quantity"]
    _free(session, freed)
    if all(line.quantity == 0 for line in reservation.lines):
        _close(reservation, RELEASED)
    session.flush()
    return reservation


def expire_due(session: Session, now: datetime | None = None) -> int:
    """Free every hold whose time is up. Cheap when there is none (an indexed look-up)."""
    now = now or datetime.now(UTC)
    due = select(Reservation).where(Reservation.status == HELD, Reservation.expires_at <= now)
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=Reservation)
    expired = list(session.scalars(due))
    freed: dict[int, int] = {}
    for reservation in expired:
        for line in reservation.lines:
            freed[line.stock_id] = freed.get(line.stock_id, 0) + line.quantity
        _close(reservation, EXPIRED, now)
    _free(session, freed)  # all balances at once, in stock order: no deadlock with others
    if expired:
        session.flush()
    return len(expired)


def _open(session: Session, reservation_id: int) -> Reservation:
    reservation = get_reservation(session, reservation_id, lock=True)
    if reservation.status == HELD and _aware(reservation.expires_at) <= datetime.now(UTC):
        _unhold(session, reservation)
        _close(reservation, EXPIRED)
        session.flush()
    if reservation.status != HELD:
        raise Conflict(f"reservation {reservation_id} is {reservation.status}, not held",
                       extra={"reservation_status": reservation.status})
    return reservation


def _unhold(session: Session, reservation: Reservation) -> None:
    _free(session, {line.stock_id: line.quantity for line in reservation.lines})


def _free(session: Session, quantities: dict[int, int]) -> None:
    """Lower `reserved` by {stock id: quantity}, in stock id order (the one lock order)."""
    for stock_id in sorted(quantities):
        if quantities[stock_id]:
            session.execute(update(Stock).where(Stock.id == stock_id)
                            .values(reserved=Stock.reserved - quantities[stock_id]))


def _close(reservation: Reservation, status: str, now: datetime | None = None) -> Reservation:
    reservation.status = status
    reservation.closed_at = now or datetime.now(UTC)
    return reservation


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
