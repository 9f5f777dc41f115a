"""`many_rows` pauses the cycle collector for reads of millions of rows (issue 12) and gives it
back as it found it, however such reads overlap on threads."""

from __future__ import annotations

import gc
import threading

import pytest

from shared.db import many_rows


@pytest.fixture
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_paused_inside_and_on_again_after(collector_on):
    with many_rows():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_overlapping_reads_keep_it_paused_until_the_last_ends(collector_on):
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def second():
        first_in.wait()
        with many_rows():
            second_in.set()
            first_out.wait()
            seen.append(gc.isenabled())  # the first read ended: still paused for this one

    thread = threading.Thread(target=second)
    thread.start()
    with many_rows():
        first_in.set()
        second_in.wait()
    first_out.set()
    thread.join()
    assert seen == [False] and gc.isenabled()


def test_a_collector_turned_off_by_someone_else_stays_off(collector_on):
    gc.disable()
    with many_rows():
        pass
    assert not gc.isenabled()
    gc.enable()


def test_on_again_after_a_failed_read(collector_on):
    with pytest.raises(RuntimeError), many_rows():
        raise RuntimeError("the database went away")
    assert gc.isenabled()
