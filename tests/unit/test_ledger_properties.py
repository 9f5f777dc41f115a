"""Random sequences of everything that moves stock, checked against a small model after every
step: receipts with lots and expiry dates (some long past), issues (any lot or a named one),
adjustments both ways, transfers sent and received (in full or short), stocktakes, reservations
made, committed, released or left to expire, and write-offs of expired lots.

After every step, for every balance: on_hand >= 0, 0 <= reserved <= on_hand, the ledger lines
add up to on_hand, the lots add up to on_hand, and both equal the model. The ledger lines each
step writes must be exactly the model's, which takes perishable stock earliest expiry first,
and never issues, sends or holds a lot past its date (an adjustment may take any lot).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from harness import fresh_pg_schema
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select, text
from sqlalchemy.pool import StaticPool

from inventory_svc import catalog, expiry, ledger, reservations, shelf, stock, transfers
from inventory_svc.models import Base, Item, Lot, Movement, Stock, Warehouse
from inventory_svc.vocabulary import ADJUSTMENT, INWARD_KINDS, OUTWARD_KINDS
from shared.auth import Identity
from shared.db import Database
from shared.errors import Conflict, InvalidInput

ADMIN = Identity("prop", "admin")
PLACES = ("KL", "T1", "T2")
ITEMS = {"TENT": False, "WATER": True}  # sku -> perishable
PAST = date(2020, 1, 1)  # expired whenever the test runs
DATES = (date(2099, 1, 1), date(2099, 3, 1), date(2099, 6, 1), PAST)
NAMES = ("", "A", "B")

places = st.sampled_from(PLACES)
skus = st.sampled_from(sorted(ITEMS))
quantities = st.integers(1, 40)


@dataclass
class LotRow:
    lot: str
    expires_on: date | None
    on_hand: int


class Model:
    """What the ledger should hold: lots per balance in the order they were made."""

    def __init__(self):
        self.lots: dict[tuple[str, str], list[LotRow]] = defaultdict(list)
        self.reserved: Counter = Counter()

    def on_hand(self, key) -> int:
        return sum(row.on_hand for row in self.lots[key])

    def available(self, key) -> int:
        return self.on_hand(key) - self.reserved[key]

    def expired(self, key) -> list[LotRow]:
        """The lots past their date with stock in them, earliest first."""
        return sorted((row for row in self.lots[key] if row.on_hand > 0 and row.expires_on
                       and row.expires_on < shelf.today()), key=lambda row: row.expires_on)

    def usable(self, key) -> int:
        """What may be issued, sent or held: neither held nor expired."""
        return self.available(key) - sum(row.on_hand for row in self.expired(key))

    def add(self, key, quantity, lot, expires_on, kind) -> list | None:
        """The line stock coming in makes, or None when it is refused."""
        rows = self.lots[key]
        if lot and expires_on is None:
            found = next((row for row in rows if row.lot == lot), None)
        else:
            found = next((row for row in rows if (row.lot, row.expires_on) == (lot, expires_on)),
                         None)
            if found is None and lot and kind != "transfer_in" and any(
                    row.lot == lot and row.expires_on is not None for row in rows):
                return None  # that lot name is here already with another date
        if found is None:
            found = LotRow(lot, expires_on, 0)
            rows.append(found)
        found.on_hand += quantity
        return [(key, kind, quantity, lot, found.expires_on)]

    def remove(self, key, quantity, kind, lot=None) -> list:
        """The lines taking `quantity` out, earliest expiry first (undated last)."""
        gone = [] if kind == "adjustment" else self.expired(key)
        candidates = [row for row in self.lots[key] if row.on_hand > 0
                      and (lot is None or row.lot == lot) and row not in gone]
        order = {id(row): index for index, row in enumerate(self.lots[key])}
        candidates.sort(key=lambda row: (row.expires_on is None, row.expires_on or date.min,
                                         order[id(row)]))
        lines, left = [], quantity
        for row in candidates:
            take = min(row.on_hand, left)
            row.on_hand -= take
            left -= take
            lines.append((key, kind, -take, row.lot, row.expires_on))
            if not left:
                break
        assert left == 0, "the model removed more than it holds"
        return lines

    def can_remove(self, key, quantity, lot=None, kind="adjustment") -> bool:
        gone = [] if kind == "adjustment" else self.expired(key)
        if (self.available(key) if kind == "adjustment" else self.usable(key)) < quantity:
            return False
        return lot is None or sum(r.on_hand for r in self.lots[key]
                                  if r.lot == lot and r not in gone) >= quantity


class LedgerMachine(RuleBasedStateMachine):
    sent = Bundle("sent")
    holds = Bundle("holds")

    def __init__(self):
        super().__init__()
        self.db = self.make_database()
        self.model = Model()
        self.expected_lines: list = []
        self.last_movement = 0
        self.in_transit: dict[int, list] = {}
        self.hold_lines: dict[int, dict] = {}
        self.hold_status: dict[int, str] = {}

    def make_database(self) -> Database:
        db = Database("sqlite://", poolclass=StaticPool)
        Base.metadata.create_all(db.engine)
        return db

    @initialize()
    def build(self):
        with self.db.unit_of_work() as session:
            for code, level, parent in (("QDN", "prefecture", None), ("KL", "county", "QDN"),
                                        ("T1", "township", "KL"), ("T2", "township", "KL")):
                catalog.create_warehouse(session, ADMIN, {"code": code, "name": code,
                                                          "level": level, "parent": parent})
            for sku, perishable in ITEMS.items():
                catalog.create_item(session, ADMIN, {"sku": sku, "name": sku, "unit": "piece",
                                                     "category": "relief",
                                                     "perishable": perishable})

    def run(self, fn, *args):
        """One command in its own unit of work: its result, or the domain error it raised."""
        try:
            with self.db.unit_of_work() as session:
                return fn(session, ADMIN, *args)
        except (InvalidInput, Conflict) as exc:
            return exc

    def expect(self, ok: bool, result, lines=()) -> bool:
        if ok:
            assert not isinstance(result, Exception), result
            self.expected_lines += lines
        else:
            assert isinstance(result, InvalidInput | Conflict), result
        return ok

    # --- movements -----------------------------------------------------------------------

    @rule(place=places, sku=skus, quantity=quantities, lot=st.sampled_from(NAMES),
          expires=st.sampled_from((None, *DATES)))
    def receive(self, place, sku, quantity, lot, expires):
        if ITEMS[sku] and expires is None:
            expires = DATES[0]
        result = self.run(ledger.post_movement, {
            "warehouse": place, "item": sku, "kind": "receipt", "quantity": quantity,
            "lot": lot or None, "expires_on": expires})
        lines = self.model.add((place, sku), quantity, lot, expires, "receipt")
        self.expect(lines is not None, result, lines or [])

    @rule(place=places, sku=skus, quantity=quantities,
          lot=st.sampled_from((None, None, "A", "B")))
    def issue(self, place, sku, quantity, lot):
        key = (place, sku)
        ok = self.model.can_remove(key, quantity, lot, "issue")
        result = self.run(ledger.post_movement, {"warehouse": place, "item": sku,
                                                 "kind": "issue", "quantity": quantity,
                                                 "lot": lot})
        lines = self.model.remove(key, quantity, "issue", lot) if ok else []
        self.expect(ok, result, lines)

    @rule(place=places, sku=skus, delta=st.integers(-25, 25).filter(bool),
          expires=st.sampled_from(DATES))
    def adjust(self, place, sku, delta, expires):
        key = (place, sku)
        line = {"warehouse": place, "item": sku, "kind": "adjustment", "quantity": delta,
                "reason": "counted again"}
        if delta > 0:
            result = self.run(ledger.post_movement, {**line, "expires_on": expires})
            lines = self.model.add(key, delta, "", expires, "adjustment")
            self.expect(True, result, lines)
        else:
            ok = self.model.can_remove(key, -delta)
            result = self.run(ledger.post_movement, line)
            self.expect(ok, result, self.model.remove(key, -delta, "adjustment") if ok else [])

    @rule(place=places, sku=skus, counted=st.integers(0, 60), expires=st.sampled_from(DATES))
    def stocktake(self, place, sku, counted, expires):
        key = (place, sku)
        delta = counted - self.model.on_hand(key)
        ok = delta >= 0 or counted >= self.model.reserved[key]
        result = self.run(stock.stocktake, {"warehouse": place, "counts": [
            {"item": sku, "counted": counted, "expires_on": expires}]})
        lines = []
        if ok and delta > 0:
            lines = self.model.add(key, delta, "", expires, "adjustment")
        elif ok and delta < 0:
            lines = self.model.remove(key, -delta, "adjustment")
        self.expect(ok, result, lines)

    # --- transfers ----------------------------------------------------------------------

    @rule(target=sent, source=places, destination=places, sku=skus, quantity=quantities)
    def send(self, source, destination, sku, quantity):
        if source == destination:
            return multiple()
        ok = self.model.can_remove((source, sku), quantity, kind="transfer_out")
        result = self.run(transfers.create_transfer, {
            "source": source, "destination": destination,
            "lines": [{"item": sku, "quantity": quantity}]})
        lines = self.model.remove((source, sku), quantity, "transfer_out") if ok else []
        if not self.expect(ok, result, lines):
            return multiple()
        self.in_transit[result.id] = [(destination, sku, line[2:]) for line in lines]
        return result.id

    @rule(transfer=consumes(sent), short=st.integers(0, 5))
    def receive_transfer(self, transfer, short):
        lots = self.in_transit.pop(transfer)
        sent_quantity = -sum(quantity for _, _, (quantity, _, _) in lots)
        received = max(sent_quantity - short, 0)
        sku = lots[0][1]
        line = {"item": sku, "received": received}
        if received < sent_quantity:
            line["reason"] = "lost on the road"
        result = self.run(transfers.receive_transfer, transfer, {"lines": [line]})
        lines, left = [], received
        for destination, sku, (quantity, lot, expires) in lots:
            take = min(-quantity, left)
            if take:
                lines += self.model.add((destination, sku), take, lot, expires, "transfer_in")
            left -= take
        self.expect(True, result, lines)
        again = self.run(transfers.receive_transfer, transfer, {})
        assert isinstance(again, Conflict)

    @rule(place=places, sku=skus)
    def write_off(self, place, sku):
        key = (place, sku)
        gone = self.model.expired(key)
        result = self.run(ledger.write_off, {"warehouse": place, "item": sku})
        lines = [(key, "adjustment", -row.on_hand, row.lot, row.expires_on) for row in gone]
        self.expect(True, result, lines)
        for row in gone:
            row.on_hand = 0

    # --- reservations -------------------------------------------------------------------

    @rule(target=holds, lines=st.lists(st.tuples(places, skus, quantities), min_size=1,
                                       max_size=3))
    def reserve(self, lines):
        wanted: Counter = Counter()
        for place, sku, quantity in lines:
            wanted[place, sku] += quantity
        ok = all(self.model.usable(key) >= quantity for key, quantity in wanted.items())
        result = self.run(reservations.create_reservation, {"lines": [
            {"warehouse": p, "item": s, "quantity": q} for p, s, q in lines]}, 3600)
        if not self.expect(ok, result):
            shortfalls = result.extra["shortfalls"]
            assert {(s["warehouse"], s["item"]) for s in shortfalls} == {
                key for key, quantity in wanted.items() if self.model.usable(key) < quantity}
            return multiple()
        self.model.reserved.update(wanted)
        self.hold_lines[result.id] = dict(wanted)
        self.hold_status[result.id] = "held"
        return result.id

    @rule(hold=holds)
    def commit(self, hold):
        ok = self.hold_status[hold] == "held"
        result = self.run(reservations.commit_reservation, hold)
        lines = []
        if ok:
            for key, quantity in self.hold_lines[hold].items():
                self.model.reserved[key] -= quantity
                lines += self.model.remove(key, quantity, "issue")
            self.hold_status[hold] = "committed"
        self.expect(ok, result, lines)

    @rule(hold=holds)
    def release(self, hold):
        status = self.hold_status[hold]
        result = self.run(reservations.release_reservation, hold)
        if self.expect(status != "committed", result) and status == "held":
            self.model.reserved.subtract(self.hold_lines[hold])
            self.hold_status[hold] = "released"

    @rule()
    def time_passes(self):
        with self.db.unit_of_work() as session:
            later = datetime.now(UTC) + timedelta(hours=2)
            expired = expiry.expire_due(session, now=later)
        held = [hold for hold, status in self.hold_status.items() if status == "held"]
        assert expired == len(held)
        for hold in held:
            self.model.reserved.subtract(self.hold_lines[hold])
            self.hold_status[hold] = "expired"

    # --- what must always hold ----------------------------------------------------------

    @invariant()
    def balances_add_up(self):
        with self.db.reading() as session:
            rows = session.execute(select(Warehouse.code, Item.sku, Stock.id, Stock.on_hand,
                                          Stock.reserved)
                                   .join(Stock.warehouse).join(Stock.item)).all()
            ledger_sums = {(code, sku): total for code, sku, total in session.execute(
                select(Warehouse.code, Item.sku, func.sum(Movement.quantity))
                .join(Movement.warehouse).join(Movement.item)
                .group_by(Warehouse.code, Item.sku))}
            lots = defaultdict(list)
            for lot in session.scalars(select(Lot).order_by(Lot.id)):
                lots[lot.stock_id].append((lot.lot, lot.expires_on, lot.on_hand))
            new_lines = session.execute(
                select(Warehouse.code, Item.sku, Movement.kind, Movement.quantity, Movement.lot,
                       Movement.expires_on, Movement.id, Movement.balance_after)
                .join(Movement.warehouse).join(Movement.item)
                .where(Movement.id > self.last_movement).order_by(Movement.id)).all()
        for code, sku, stock_id, on_hand, reserved in rows:
            key = (code, sku)
            assert on_hand >= 0 and 0 <= reserved <= on_hand, (key, on_hand, reserved)
            assert on_hand == self.model.on_hand(key), (key, on_hand, self.model.lots[key])
            assert reserved == self.model.reserved[key], key
            assert ledger_sums.get(key, 0) == on_hand, key
            assert sum(quantity for *_, quantity in lots[stock_id]) == on_hand
            assert lots[stock_id] == [(row.lot, row.expires_on, row.on_hand)
                                      for row in self.model.lots[key]], key
        for key in self.model.lots:
            assert self.model.on_hand(key) == 0 or key in {(c, s) for c, s, *_ in rows}
        written = [((code, sku), kind, quantity, lot, expires)
                   for code, sku, kind, quantity, lot, expires, _, _ in new_lines]
        by_balance = sorted(written, key=lambda line: line[0])
        assert by_balance == sorted(self.expected_lines, key=lambda line: line[0])
        assert all(line.balance_after >= 0 for line in new_lines)
        for line in new_lines:  # the one sign rule: + in, - out, an adjustment either way
            if line.kind in INWARD_KINDS:
                assert line.quantity > 0, line
            elif line.kind in OUTWARD_KINDS:
                assert line.quantity < 0, line
            else:
                assert line.kind == ADJUSTMENT and line.quantity != 0, line
        if new_lines:
            self.last_movement = new_lines[-1].id
        self.expected_lines = []

    def teardown(self):
        self.db.dispose()


LedgerMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_ledger_keeps_every_invariant = LedgerMachine.TestCase


@pytest.mark.postgres
def test_ledger_keeps_every_invariant_on_postgresql(pg_database):
    """The same machine on PostgreSQL, where a movement is one statement (`ledger._at_once`)
    with its own fallbacks: every table emptied before each example."""
    fresh_pg_schema(pg_database, "inventory_svc")
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)

    class OnPostgres(LedgerMachine):
        def make_database(self) -> Database:
            db = Database(pg_database)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            return db

    run_state_machine_as_test(OnPostgres, settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
