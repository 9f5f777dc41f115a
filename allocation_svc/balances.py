"""Every balance of the network the allocation service keeps, as numpy columns.

A nation has 2.7 million balances: as the lists a snapshot answer decodes to, each number is a
Python int and each item a string of its own (about 850 MiB in a worker); as columns of int64
with the items numbered, 8 bytes a number (about 150 MiB). A balance is found by its key,
warehouse row and item number in one int64, in a sorted copy of the keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

NUMBERS = ("on_hand", "available", "expired", "in_transit", "min", "target")
COLUMNS = ("warehouse", "item", *NUMBERS)
_SPAN = 1 << 24  # item numbers per warehouse in a key: far more items than a catalogue has


@dataclass(frozen=True)
class Balances:
    """Never changed once made (`updated` makes another, sharing what did not change), so that
    a plan reads one consistent set while a refresh makes the next."""

    warehouse: np.ndarray  # int64, each balance's row in the warehouses
    item: np.ndarray  # int64, each balance's item as its number in `skus`
    skus: tuple[str, ...]  # number -> sku
    numbers: dict[str, np.ndarray]  # NUMBERS, int64 each
    _keys: np.ndarray  # the balances' keys, sorted
    _order: np.ndarray  # the row of each sorted key

    @classmethod
    def of(cls, columns: dict[str, list]) -> Balances:
        """From a snapshot answer's stock columns (COLUMNS, items as skus)."""
        numbering: dict[str, int] = {}
        item = np.fromiter((numbering.setdefault(sku, len(numbering)) for sku in columns["item"]),
                           dtype=np.int64, count=len(columns["item"]))
        warehouse = np.asarray(columns["warehouse"], dtype=np.int64)
        keys = warehouse * _SPAN + item
        order = np.argsort(keys, kind="stable")
        return cls(warehouse, item, tuple(numbering),
                   {name: np.asarray(columns[name], dtype=np.int64) for name in NUMBERS},
                   keys[order], order)

    def __len__(self) -> int:
        return len(self.warehouse)

    def number(self) -> dict[str, int]:
        """sku -> its number in `item`."""
        return {sku: i for i, sku in enumerate(self.skus)}

    def column(self, name: str) -> list:
        """One column as Python values, items as skus (what a snapshot answer holds)."""
        if name == "item":
            skus = self.skus
            return [skus[i] for i in self.item.tolist()]
        return (self.warehouse if name == "warehouse" else self.numbers[name]).tolist()

    def rows(self) -> Iterator[tuple]:
        """Each balance as (warehouse row, sku, *NUMBERS), for the rules that walk them all
        (restocking); a plan reads the columns."""
        return zip(*(self.column(name) for name in COLUMNS), strict=True)

    def find(self, warehouse: np.ndarray, item: np.ndarray) -> np.ndarray:
        """Rows of the balances (warehouse row, item number), -1 where there is none."""
        keys = np.asarray(warehouse, dtype=np.int64) * _SPAN + np.asarray(item, dtype=np.int64)
        if not len(self._keys):
            return np.full(len(keys), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return np.where(self._keys[at] == keys, self._order[at], -1)

    def updated(self, changed: dict[str, list]) -> Balances:
        """The same with a `since` answer's balances in: a known balance's numbers replaced,
        a new one appended (in the order it first comes). Columns that did not change are
        shared with this one; those that did are copied, once each."""
        if not changed["warehouse"]:
            return self
        known = set(self.skus)
        skus = self.skus + tuple(dict.fromkeys(
            sku for sku in changed["item"] if sku not in known))
        number = self.number() if skus == self.skus else {s: i for i, s in enumerate(skus)}
        warehouse = np.asarray(changed["warehouse"], dtype=np.int64)
        item = np.fromiter((number[sku] for sku in changed["item"]), dtype=np.int64,
                           count=len(warehouse))
        spots = self.find(warehouse, item)
        size, added = len(self), {}
        for j in np.flatnonzero(spots < 0).tolist():
            key = (int(warehouse[j]), int(item[j]))
            spots[j] = added.setdefault(key, size + len(added))
        grow = len(added)
        new_rows = np.array(list(added), dtype=np.int64).reshape(grow, 2)
        numbers = {}
        for name, column in self.numbers.items():
            values = np.asarray(changed[name], dtype=np.int64)
            if grow:
                column = np.concatenate([column, np.zeros(grow, dtype=np.int64)])
            elif np.array_equal(column[spots], values):
                numbers[name] = column
                continue
            else:
                column = column.copy()
            column[spots] = values
            numbers[name] = column
        if not grow:
            return Balances(self.warehouse, self.item, skus, numbers, self._keys, self._order)
        keys = new_rows[:, 0] * _SPAN + new_rows[:, 1]
        rows = np.arange(size, size + grow, dtype=np.int64)
        by_key = np.argsort(keys)
        at = np.searchsorted(self._keys, keys[by_key])
        return Balances(np.concatenate([self.warehouse, new_rows[:, 0]]),
                        np.concatenate([self.item, new_rows[:, 1]]), skus, numbers,
                        np.insert(self._keys, at, keys[by_key]),
                        np.insert(self._order, at, rows[by_key]))
