"""The balances the allocation service keeps, as numpy columns (issue 12: a nation's 2.7
million in a fraction of the memory of lists, and a refresh that does not copy them): brought
up to date by `since` answers, folded or not, they equal the balances made afresh from the
same rows, a depot table filled from their parts sees the same, and an older set is never
changed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocation_svc import balances
from allocation_svc.balances import COLUMNS, NUMBERS, Balances


def answer(rows: list[tuple]) -> dict[str, list]:
    return {name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)}


def as_dict(kept: Balances) -> dict[tuple[int, str], tuple]:
    return {(row, sku): tuple(numbers) for row, sku, *numbers in kept.rows()}


def table(kept: Balances, warehouses: int) -> dict[tuple[int, str], int]:
    """What a depot table filled from the parts holds (available, by warehouse and sku)."""
    filled = np.zeros((warehouses, len(kept.skus)), dtype=np.int64)
    seen = np.zeros_like(filled, dtype=bool)
    for part in kept.parts():
        filled[part.warehouse, part.item] = part.numbers["available"]
        seen[part.warehouse, part.item] = True
    return {(row, kept.skus[i]): int(filled[row, i])
            for row, i in zip(*np.nonzero(seen), strict=True)}


def test_a_change_and_a_new_balance_leave_the_older_set_as_it_was():
    first = Balances.of(answer([(0, "TENT", 5, 5, 0, 0, 1, 9)]))
    second = first.updated(answer([(1, "QUILT", 3, 2, 0, 0, 0, 4),
                                   (0, "TENT", 4, 4, 0, 0, 1, 9)]))
    assert as_dict(first) == {(0, "TENT"): (5, 5, 0, 0, 1, 9)}
    assert as_dict(second) == {(0, "TENT"): (4, 4, 0, 0, 1, 9),
                               (1, "QUILT"): (3, 2, 0, 0, 0, 4)}
    assert second.skus == ("TENT", "QUILT") and first.skus == ("TENT",)
    assert len(first) == 1 and len(second) == 2
    assert table(second, 2) == {(0, "TENT"): 4, (1, "QUILT"): 2}


def test_a_refresh_copies_nothing_of_the_base():
    first = Balances.of(answer([(0, "TENT", 5, 5, 0, 0, 1, 9), (1, "TENT", 2, 2, 0, 0, 0, 0)]))
    second = first.updated(answer([(1, "TENT", 3, 3, 0, 0, 0, 0)]))
    assert second.base is first.base and len(second.changes) == 1
    third = second.updated(answer([(1, "TENT", 4, 4, 0, 0, 0, 0)]))
    assert third.base is first.base and len(third.changes) == 1  # the balance's newer row
    assert table(third, 2) == {(0, "TENT"): 5, (1, "TENT"): 4}
    assert first.updated(answer([])) is first


def test_many_changes_are_folded_into_the_base(monkeypatch):
    monkeypatch.setattr(balances, "FOLD_AT", 3)
    kept = Balances.of(answer([(0, "TENT", 5, 5, 0, 0, 0, 0)]))
    kept = kept.updated(answer([(0, "TENT", 6, 6, 0, 0, 0, 0), (1, "TENT", 1, 1, 0, 0, 0, 0)]))
    assert len(kept.changes) == 2
    folded = kept.updated(answer([(2, "WATER", 7, 7, 0, 0, 0, 0)]))
    assert len(folded.changes) == 0 and len(folded.base) == 3
    assert as_dict(folded) == {(0, "TENT"): (6, 6, 0, 0, 0, 0), (1, "TENT"): (1, 1, 0, 0, 0, 0),
                               (2, "WATER"): (7, 7, 0, 0, 0, 0)}
    assert as_dict(kept) == {(0, "TENT"): (6, 6, 0, 0, 0, 0), (1, "TENT"): (1, 1, 0, 0, 0, 0)}


def test_an_empty_set_grows():
    empty = Balances.of(answer([]))
    assert len(empty) == 0 and as_dict(empty) == {}
    grown = empty.updated(answer([(3, "WATER", 1, 1, 0, 0, 0, 0)]))
    assert as_dict(grown) == {(3, "WATER"): (1, 1, 0, 0, 0, 0)} and len(grown) == 1


balance = st.tuples(st.integers(0, 30), st.sampled_from(["TENT", "QUILT", "WATER", "RICE"]),
                    *[st.integers(-5, 10**12) for _ in NUMBERS])


@pytest.mark.parametrize("fold_at", [4, 65_536])
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # the same FOLD_AT
@given(start=st.lists(balance, max_size=30),
       refreshes=st.lists(st.lists(balance, max_size=12), max_size=6))
def test_brought_up_to_date_equals_made_afresh(monkeypatch, fold_at, start, refreshes):
    """A refresh may list a balance twice (the later row wins), as a slow reader's could."""
    monkeypatch.setattr(balances, "FOLD_AT", fold_at)
    state = {}
    for row in start:
        state[row[:2]] = row
    kept = Balances.of(answer(list(state.values())))
    for refresh in refreshes:
        before = as_dict(kept)
        updated = kept.updated(answer(refresh))
        assert as_dict(kept) == before  # the older set untouched
        kept = updated
        for row in refresh:
            state[row[:2]] = row
    expected = {key: row[2:] for key, row in state.items()}
    assert as_dict(kept) == expected and len(kept) == len(expected)
    assert table(kept, 31) == {key: numbers[1] for key, numbers in expected.items()}
    assert kept.totals() == {"balances": len(expected), **{
        name: sum(numbers[i] for numbers in expected.values()) for i, name in enumerate(NUMBERS)}}
