"""Every balance of the network the allocation service keeps, as numpy columns.

A nation has 2.7 million balances: as the lists a snapshot answer decodes to, each number is a
Python int and each item a string of its own; as columns of int64 with the items numbered, 8
bytes a number (a national worker's RSS after its first plan: 1,848 MiB with lists, 1,347 with
columns, docs/benchmarks.md). A refresh brings a few rows; copying the columns for them cost a
plan up to seconds (fresh memory for 2.7 million rows, faulted in page by page), so they are
kept beside the columns as `changes`, and folded in only once there are many.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

NUMBERS = ("on_hand", "available", "expired", "in_transit", "min", "target")
COLUMNS = ("warehouse", "item", *NUMBERS)
FOLD_AT = 65_536  # changed rows kept beside the columns before they are folded into them
_SPAN = 1 << 24  # item numbers per warehouse in a key: far more items than a catalogue has


@dataclass(frozen=True)
class Rows:
    """Balances as columns: each one's warehouse row, its item's number, its numbers."""

    warehouse: np.ndarray  # int64
    item: np.ndarray  # int64, the item's number in `Balances.skus`
    numbers: dict[str, np.ndarray]  # NUMBERS, int64 each

    @classmethod
    def empty(cls) -> Rows:
        nothing = np.zeros(0, dtype=np.int64)
        return cls(nothing, nothing, {name: nothing for name in NUMBERS})

    def __len__(self) -> int:
        return len(self.warehouse)

    def keys(self) -> np.ndarray:
        return self.warehouse * _SPAN + self.item

    def taken(self, rows: np.ndarray) -> Rows:
        return Rows(self.warehouse[rows], self.item[rows],
                    {name: column[rows] for name, column in self.numbers.items()})

    def then(self, other: Rows) -> Rows:
        return Rows(np.concatenate([self.warehouse, other.warehouse]),
                    np.concatenate([self.item, other.item]),
                    {name: np.concatenate([column, other.numbers[name]])
                     for name, column in self.numbers.items()})


@dataclass(frozen=True)
class Balances:
    """The balances as of the last full read or fold (`base`, one row each), and the rows
    changed or added since (`changes`, one row per balance, a balance at most once). Never
    changed once made (`updated` makes another), so that a plan reads one consistent set
    while a refresh makes the next."""

    base: Rows
    changes: Rows
    skus: tuple[str, ...]  # number -> sku
    _keys: np.ndarray  # the base's keys, sorted
    _order: np.ndarray  # the base row of each sorted key
    _added: int  # balances in `changes` that the base does not have

    @classmethod
    def of(cls, columns: dict[str, list]) -> Balances:
        """From a snapshot answer's stock columns (COLUMNS, items as skus)."""
        numbering: dict[str, int] = {}
        item = np.fromiter((numbering.setdefault(sku, len(numbering)) for sku in columns["item"]),
                           dtype=np.int64, count=len(columns["item"]))
        base = Rows(np.asarray(columns["warehouse"], dtype=np.int64), item,
                    {name: np.asarray(columns[name], dtype=np.int64) for name in NUMBERS})
        return cls._based(base, tuple(numbering))

    @classmethod
    def _based(cls, base: Rows, skus: tuple[str, ...]) -> Balances:
        keys = base.keys()
        order = np.argsort(keys, kind="stable")
        return cls(base, Rows.empty(), skus, keys[order], order, 0)

    def __len__(self) -> int:
        return len(self.base) + self._added

    def number(self) -> dict[str, int]:
        """sku -> its number in `item`."""
        return {sku: i for i, sku in enumerate(self.skus)}

    def parts(self) -> tuple[Rows, Rows]:
        """The base, then the changes: a table filled from both in that order holds every
        balance as it is now."""
        return self.base, self.changes

    def rows(self) -> Iterator[tuple]:
        """Each balance as (warehouse row, sku, *NUMBERS), for the rules that walk them all
        (restocking); a plan reads the columns."""
        folded, skus = self._folded(), self.skus
        return zip(folded.warehouse.tolist(), [skus[i] for i in folded.item.tolist()],
                   *(folded.numbers[name].tolist() for name in NUMBERS), strict=True)

    def totals(self) -> dict[str, int]:
        """How many balances, and the sum of each number column (what the inventory's snapshot
        `digest` answers for the same version)."""
        replaced = self._base_rows(self.changes.keys())
        replaced = replaced[replaced >= 0]
        return {"balances": len(self), **{
            name: int(column.sum() - column[replaced].sum() + self.changes.numbers[name].sum())
            for name, column in self.base.numbers.items()}}

    def updated(self, changed: dict[str, list]) -> Balances:
        """The same with a `since` answer's balances in (items as skus): they join the
        changes, replacing any earlier row of theirs; many changes are folded into the base."""
        if not changed["warehouse"]:
            return self
        known = set(self.skus)
        skus = self.skus + tuple(dict.fromkeys(
            sku for sku in changed["item"] if sku not in known))
        number = {sku: i for i, sku in enumerate(skus)}
        new = Rows(np.asarray(changed["warehouse"], dtype=np.int64),
                   np.fromiter((number[sku] for sku in changed["item"]), dtype=np.int64,
                               count=len(changed["item"])),
                   {name: np.asarray(changed[name], dtype=np.int64) for name in NUMBERS})
        new = new.taken(_last_of_each(new.keys()))
        old = self.changes
        changes = old.taken(np.flatnonzero(~np.isin(old.keys(), new.keys()))).then(new)
        added = int((self._base_rows(changes.keys()) < 0).sum())
        result = Balances(self.base, changes, skus, self._keys, self._order, added)
        return result._fold() if len(changes) >= FOLD_AT else result

    def _base_rows(self, keys: np.ndarray) -> np.ndarray:
        """The base row of each key, -1 where the base has none."""
        if not len(self._keys):
            return np.full(len(keys), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return np.where(self._keys[at] == keys, self._order[at], -1)

    def _folded(self) -> Rows:
        """The base with the changes in: changed rows replaced, new ones appended."""
        changes = self.changes
        if not len(changes):
            return self.base
        spots = self._base_rows(changes.keys())
        known, fresh = np.flatnonzero(spots >= 0), np.flatnonzero(spots < 0)
        numbers = {}
        for name, column in self.base.numbers.items():
            column = column.copy()
            column[spots[known]] = changes.numbers[name][known]
            numbers[name] = column
        return Rows(self.base.warehouse, self.base.item, numbers).then(changes.taken(fresh))

    def _fold(self) -> Balances:
        return Balances._based(self._folded(), self.skus)


def _last_of_each(keys: np.ndarray) -> np.ndarray:
    """The rows holding the last occurrence of each key, in the order of those rows."""
    backwards = keys[::-1]
    _, first_backwards = np.unique(backwards, return_index=True)
    return np.sort(len(keys) - 1 - first_backwards)
