"""Transfers between depots: stock leaves the source at once, is in transit, and arrives when
the destination's keeper receives it; a short receipt records the difference with a reason."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inventory_svc import catalog, ledger
from inventory_svc.expiry import expire_due
from inventory_svc.models import Item, Transfer, TransferLine, Warehouse, outbox
from inventory_svc.permissions import require
from inventory_svc.vocabulary import CLOSED, IN_TRANSIT, RECEIVED, TRANSFER_IN, TRANSFER_OUT
from shared import events
from shared.auth import Identity
from shared.errors import Conflict, EmsupplyError, InvalidInput, NotFound
from shared.sql import locks_rows

MAX_ID = 2**63 - 1


def create_transfer(session: Session, identity: Identity, data: dict[str, Any]) -> Transfer:
    source, destination, items = _resolve(session, identity, data, {}, {})
    expire_due(session)
    ledger.lock_balances(session, [(w, item) for item in items.values()
                                   for w in (source, destination)])
    return _send(session, identity, [(source, destination, items)], [data])[0]


def create_transfers(session: Session, identity: Identity,
                     batch: list[dict[str, Any]]) -> list[Transfer]:
    """Many transfers in one transaction, all or none: a restocking of thousands of transfers
    is one call, not thousands. Every transfer is checked before any stock moves, and every
    source balance is locked at once, in the one order of `ledger.lock_balances`, so a batch
    never deadlocks with another command; a refusal names the transfer by its index
    (`transfers.<i>.<field>`). The destinations' balances are made (and locked) too, so that
    what is on the way shows in them (`in_transit`) before it arrives."""
    warehouses: dict[str, Warehouse] = {}
    items: dict[str, Item] = {}
    resolved = []
    for index, data in enumerate(batch):
        with _numbered(index):
            resolved.append(_resolve(session, identity, data, warehouses, items))
    expire_due(session)
    ledger.lock_balances(session, [(w, item) for source, destination, lines in resolved
                                   for item in lines.values() for w in (source, destination)])
    return _send(session, identity, resolved, batch, numbered=True)


@contextmanager
def _numbered(index: int) -> Iterator[None]:
    """A refusal of the transfer at `index` of a batch, saying which one it is."""
    try:
        yield
    except EmsupplyError as exc:
        errors = {f"transfers.{index}.{name}": messages
                  for name, messages in (exc.errors or {}).items()}
        raise type(exc)(f"transfer {index}: {exc.detail}", errors=errors or None,
                        extra=exc.extra, headers=exc.headers) from None


def _resolve(session: Session, identity: Identity, data: dict[str, Any],
             warehouses: dict[str, Warehouse],
             items: dict[str, Item]) -> tuple[Warehouse, Warehouse, dict[str, Item]]:
    """Source, destination and items of one transfer, checked; `warehouses` and `items` keep
    what was looked up already (a batch names the same few again and again)."""
    def warehouse(code: str, field: str) -> Warehouse:
        if code not in warehouses:
            warehouses[code] = catalog.get_warehouse(session, code, field)
        return warehouses[code]

    source = warehouse(data["source"], "source")
    destination = warehouse(data["destination"], "destination")
    require(identity, "transfers.create", source)
    if source.id == destination.id:
        raise InvalidInput("source and destination are the same warehouse",
                           errors={"destination": ["must differ from source"]})
    if destination.status == CLOSED:
        raise Conflict(f"{destination.code} is closed", errors={"destination": ["closed"]})
    for sku in _merged(data["lines"]):
        if sku not in items:
            items[sku] = catalog.get_item(session, sku, "lines.item")
    return source, destination, {sku: items[sku] for sku in _merged(data["lines"])}


def _send(session: Session, identity: Identity,
          resolved: list[tuple[Warehouse, Warehouse, dict[str, Item]]],
          batch: list[dict[str, Any]], numbered: bool = False) -> list[Transfer]:
    """Take the stock out of the (locked) source balances and record the transfers: the rows
    of all of them in one flush each, not two a transfer (a batch is thousands)."""
    now = datetime.now(UTC)
    made = [Transfer(source=source, destination=destination, status=IN_TRANSIT,
                     reference=data.get("reference"), created_by=identity.actor,
                     created_at=now, lines=[])  # new: nothing to load, so no query a line
            for (source, destination, _), data in zip(resolved, batch, strict=True)]
    session.add_all(made)
    session.flush()
    for index, (transfer, (source, _, items), data) in enumerate(zip(made, resolved, batch,
                                                                     strict=True)):
        with _numbered(index) if numbered else nullcontext():
            for sku, quantity in _merged(data["lines"]).items():
                posted = ledger.remove_stock(session, source, items[sku], quantity,
                                             TRANSFER_OUT, identity.actor,
                                             reason=data.get("reason"),
                                             reference=f"transfer:{transfer.id}")
                lots = [{"lot": m.lot,
                         "expires_on": m.expires_on.isoformat() if m.expires_on else None,
                         "quantity": -m.quantity} for m in posted.lines]
                transfer.lines.append(TransferLine(item=items[sku], quantity=quantity,
                                                   lots=lots))
    session.flush()
    ledger.touch(session, {(destination.id, item.id) for _, destination, items in resolved
                           for item in items.values()})
    for transfer in made:
        events.record(session, outbox, "transfer.created", _event(transfer))
    return made


def receive_transfer(session: Session, identity: Identity, transfer_id: int,
                     data: dict[str, Any]) -> Transfer:
    transfer = get_transfer(session, transfer_id, lock=True)
    require(identity, "transfers.receive", transfer.destination)
    if transfer.status != IN_TRANSIT:
        raise Conflict(f"transfer {transfer_id} was already received")
    counted = {line["item"]: line for line in data.get("lines") or []}
    known = {line.item.sku for line in transfer.lines}
    for sku in counted:
        if sku not in known:
            raise InvalidInput(f"item {sku!r} is not on transfer {transfer_id}",
                               errors={"lines.item": [f"{sku!r} is not on this transfer"]})
    reference = f"transfer:{transfer.id}"
    ledger.lock_balances(session, [(transfer.destination, line.item) for line in transfer.lines])
    for line in transfer.lines:
        count = counted.get(line.item.sku)
        received = line.quantity if count is None else count["received"]
        if received > line.quantity:
            raise InvalidInput(f"received {received} {line.item.sku}, only {line.quantity} sent",
                               errors={"lines.received": [f"at most {line.quantity}"]})
        if received < line.quantity and not (count or {}).get("reason"):
            raise InvalidInput(f"{line.item.sku}: {line.quantity - received} short; say why",
                               errors={"lines.reason": ["required when short"]})
        line.received = received
        line.shortfall_reason = (count or {}).get("reason") if received < line.quantity else None
        for lot in _arriving(line.lots, received):
            ledger.add_stock(session, transfer.destination, line.item, lot["quantity"],
                             TRANSFER_IN, identity.actor, lot=lot["lot"],
                             expires_on=date.fromisoformat(lot["expires_on"])
                             if lot["expires_on"] else None,
                             reason=line.shortfall_reason, reference=reference)
    transfer.status = RECEIVED
    transfer.received_by = identity.actor
    transfer.received_at = datetime.now(UTC)
    session.flush()
    events.record(session, outbox, "transfer.received", _event(transfer))
    return transfer


def get_transfer(session: Session, transfer_id: int, *, lock: bool = False) -> Transfer:
    """The transfer of `transfer_id`; with `lock`, held until the end of the transaction so
    that two receipts of the same transfer cannot both add its stock."""
    if not 0 < transfer_id <= MAX_ID:
        raise NotFound(f"no transfer {transfer_id}")
    query = select(Transfer).where(Transfer.id == transfer_id)
    if lock and locks_rows(session):
        query = query.with_for_update(of=Transfer)
    transfer = session.scalar(query)
    if transfer is None:
        raise NotFound(f"no transfer {transfer_id}")
    return transfer


def list_transfers(session: Session, warehouse: str | None, status: str | None, limit: int,
                   after: int) -> list[Transfer]:
    query = select(Transfer).where(Transfer.id > after).order_by(Transfer.id).limit(limit)
    if warehouse:
        wid = catalog.get_warehouse(session, warehouse, "warehouse").id
        query = query.where((Transfer.source_id == wid) | (Transfer.destination_id == wid))
    if status:
        query = query.where(Transfer.status == status)
    return list(session.scalars(query))


def _merged(lines: list[dict]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for line in lines:
        merged[line["item"]] = merged.get(line["item"], 0) + line["quantity"]
    return merged


def _arriving(lots: list[dict], received: int) -> list[dict]:
    """The lots that arrive when `received` of what left comes in: earliest expiry first."""
    out = []
    for lot in lots:
        if received <= 0:
            break
        take = min(lot["quantity"], received)
        out.append({**lot, "quantity": take})
        received -= take
    return out


def _event(transfer: Transfer) -> dict[str, Any]:
    return {"id": transfer.id, "source": transfer.source.code,
            "destination": transfer.destination.code, "status": transfer.status,
            "lines": [{"item": line.item.sku, "quantity": line.quantity,
                       "received": line.received} for line in transfer.lines]}
