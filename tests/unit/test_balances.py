"""The balances the allocation service keeps, as numpy columns (issue 12: a nation's 2.7
million in a fraction of the memory of lists): brought up to date by `since` answers, they
equal the balances made afresh from the same rows, and an older set is never changed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from allocation_svc.balances import COLUMNS, NUMBERS, Balances


def answer(rows: list[tuple]) -> dict[str, list]:
    return {name: [row[i] for row in rows] for i, name in enumerate(COLUMNS)}


def as_dict(balances: Balances) -> dict[tuple[int, str], tuple]:
    return {(row, sku): tuple(numbers) for row, sku, *numbers in balances.rows()}


def test_a_change_and_a_new_balance_leave_the_older_set_as_it_was():
    first = Balances.of(answer([(0, "TENT", 5, 5, 0, 0, 1, 9)]))
    second = first.updated(answer([(1, "QUILT", 3, 2, 0, 0, 0, 4),
                                   (0, "TENT", 4, 4, 0, 0, 1, 9)]))
    assert as_dict(first) == {(0, "TENT"): (5, 5, 0, 0, 1, 9)}
    assert as_dict(second) == {(0, "TENT"): (4, 4, 0, 0, 1, 9),
                               (1, "QUILT"): (3, 2, 0, 0, 0, 4)}
    assert second.skus == ("TENT", "QUILT") and first.skus == ("TENT",)
    assert second.find([1, 0, 1], [1, 0, 0]).tolist() == [1, 0, -1]
    assert first.find([1], [1]).tolist() == [-1]


def test_unchanged_columns_are_shared_not_copied():
    first = Balances.of(answer([(0, "TENT", 5, 5, 0, 0, 1, 9), (1, "TENT", 2, 2, 0, 0, 0, 0)]))
    second = first.updated(answer([(1, "TENT", 3, 3, 0, 0, 0, 0)]))
    assert second.numbers["min"] is first.numbers["min"]
    assert second.warehouse is first.warehouse
    assert second.numbers["on_hand"] is not first.numbers["on_hand"]
    assert first.updated(answer([])) is first


def test_an_empty_set_grows():
    empty = Balances.of(answer([]))
    assert len(empty) == 0 and empty.find([0], [0]).tolist() == [-1]
    grown = empty.updated(answer([(3, "WATER", 1, 1, 0, 0, 0, 0)]))
    assert as_dict(grown) == {(3, "WATER"): (1, 1, 0, 0, 0, 0)}


balance = st.tuples(st.integers(0, 30), st.sampled_from(["TENT", "QUILT", "WATER", "RICE"]),
                    *[st.integers(-5, 10**12) for _ in NUMBERS])


@given(st.lists(balance, max_size=30), st.lists(st.lists(balance, max_size=12), max_size=6))
def test_brought_up_to_date_equals_made_afresh(start, refreshes):
    """Each refresh lists a balance at most once (as a snapshot answer does)."""
    state = {}
    for row in start:
        state[row[:2]] = row
    kept = Balances.of(answer(list(state.values())))
    for refresh in refreshes:
        unique = list({row[:2]: row for row in refresh}.values())
        before = as_dict(kept)
        updated = kept.updated(answer(unique))
        assert as_dict(kept) == before  # the older set untouched
        kept = updated
        for row in unique:
            state[row[:2]] = row
    assert as_dict(kept) == {key: row[2:] for key, row in state.items()}
    fresh = Balances.of(answer(list(state.values())))
    numbers = kept.number()
    rows = kept.find(fresh.warehouse, [numbers[fresh.skus[i]] for i in fresh.item])
    assert sorted(rows.tolist()) == list(range(len(kept)))
