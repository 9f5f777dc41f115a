"""The snapshot read by what changed (issue 12): a reader that keeps the network and asks
`since` its version gets only the balances written since, those the clock changed (a hold that
ran out, a lot past its date), and the warehouses only if any changed; the kept network then
equals a fresh full read, whatever writers did meanwhile, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from factories import build_tree, receive
from harness import Caller
from sqlalchemy import text

from allocation_svc.inventory import merged
from shared.client import RemoteError

SNAPSHOT = "/api/v1/stock/snapshot"


def read(inv, since: str | None = None) -> dict:
    answer = inv.get(SNAPSHOT + (f"?since={quote(since)}" if since else ""))
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def balances(network) -> dict[tuple[str, str], tuple]:
    codes = network.warehouses["code"]
    return {(codes[row], sku): numbers for row, sku, *numbers in network.stock.rows()}


def changed_keys(answer: dict, codes: list[str]) -> set[tuple[str, str]]:
    return {(codes[row], sku) for row, sku in zip(answer["stock"]["warehouse"],
                                                 answer["stock"]["item"], strict=True)}


def test_only_what_changed_comes_back(inv, inventory_db):
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    receive(inv, "LP", "QUILT", 4)
    first = read(inv)
    assert first["full"] is True and first["catalogue"] == 3
    codes = first["warehouses"]["code"]
    kept = merged(None, first)

    quiet = read(inv, first["version"])
    assert quiet["full"] is False and quiet["warehouses"] is None
    assert quiet["stock"]["warehouse"] == []

    receive(inv, "KL", "TENT", 5)
    hold = inv.post("/api/v1/reservations", {"lines": [
        {"warehouse": "LP", "item": "QUILT", "quantity": 3}], "ttl_seconds": 3600}).get_json()
    moved = inv.post("/api/v1/transfers", {"source": "KL", "destination": "KL-T01",
                                           "lines": [{"item": "TENT", "quantity": 2}]})
    assert moved.status_code == 201, moved.get_json()
    delta = read(inv, quiet["version"])
    assert changed_keys(delta, codes) == {("KL", "TENT"), ("LP", "QUILT"), ("KL-T01", "TENT")}
    kept = merged(merged(kept, quiet), delta)
    assert balances(kept) == balances(merged(None, read(inv)))
    assert balances(kept)[("KL-T01", "TENT")][3] == 2  # on the way

    # the clock: the hold runs out with no write at all
    with inventory_db.engine.begin() as conn:
        conn.execute(text("UPDATE reservations SET expires_at = :past WHERE id = :id"),
                     {"past": datetime.now(UTC) - timedelta(seconds=1), "id": hold["id"]})
    by_clock = read(inv, delta["version"])
    assert ("LP", "QUILT") in changed_keys(by_clock, codes)
    kept = merged(kept, by_clock)
    assert balances(kept)[("LP", "QUILT")][1] == 4
    assert balances(kept) == balances(merged(None, read(inv)))

    made = inv.post("/api/v1/warehouses", {"code": "KL-T03", "name": "Township 3",
                                           "level": "township", "parent": "KL"})
    assert made.status_code == 201
    receive(inv, "KL-T03", "TENT", 1)
    grown = read(inv, by_clock["version"])
    # A warehouse added: only it, at the position after the others, and only the balance that
    # changed (the network is not sent again, however large).
    assert grown["full"] is False
    assert grown["warehouses"]["code"] == ["KL-T03"]
    assert grown["warehouses"]["position"] == [len(codes)]
    codes = [*codes, "KL-T03"]
    again = changed_keys(grown, codes)
    assert ("KL-T03", "TENT") in again  # and the hold that ran out, still within the margin
    assert again <= {("KL-T03", "TENT"), ("LP", "QUILT")}
    kept = merged(kept, grown)
    assert kept.warehouses["code"] == codes
    assert balances(kept) == balances(merged(None, read(inv)))
    assert inv.patch("/api/v1/warehouses/LP", {"status": "closed"}).status_code == 200
    edited = read(inv, grown["version"])
    assert edited["full"] is False
    assert edited["warehouses"]["code"] == ["LP"]
    assert edited["warehouses"]["position"] == [codes.index("LP")]
    assert edited["warehouses"]["status"] == ["closed"]
    assert changed_keys(edited, codes) <= {("LP", "QUILT")}
    kept.places()  # kept, so that the edit updates it
    kept = merged(kept, edited)
    assert kept.places().status[codes.index("LP")] == "closed"
    fresh = merged(None, read(inv))
    assert balances(kept) == balances(fresh)
    assert kept.warehouses == fresh.warehouses
    for name in ("township", "county", "level", "status"):
        assert list(getattr(kept.places(), name)) == list(getattr(fresh.places(), name)), name


def test_a_version_not_given_by_the_service_is_refused_by_name(inv):
    for bad in ("x", "1~2", "1~nan~3~4", "1~1e400~3~4", "a:b:c~1~2~3", "'; drop~1~2~3",
                "1~2~abc.2026~3", "1~2~~3", "1~2~3.2026-12-01T00:00:00~4", "1~2~3.4.x~5"):
        answer = inv.get(f"{SNAPSHOT}?since={quote(bad)}")
        assert answer.status_code == 422, (bad, answer.get_json())
        assert "since" in answer.get_json()["errors"], bad


def test_a_kept_network_equals_a_fresh_read_whatever_writers_did(inv, inventory_app):
    """Writers on four threads while the reader keeps asking what changed: on PostgreSQL
    transactions commit in any order, and a stamp must not be missed for it."""
    build_tree(inv)
    codes = ["QDN", "KL", "LP", "KL-T01", "KL-T02"]
    for code in codes:
        receive(inv, code, "TENT", 200)
        receive(inv, code, "QUILT", 200)
    kept = merged(None, read(inv))
    known, failures = len(kept.warehouses["code"]), []

    def keeper(seed: int) -> None:
        rng, client = random.Random(seed), Caller(inventory_app.test_client())
        for _ in range(25):
            body = {"warehouse": rng.choice(codes), "item": rng.choice(["TENT", "QUILT"]),
                    "kind": rng.choice(["receipt", "issue"]), "quantity": rng.randint(1, 3)}
            answer = client.post("/api/v1/movements", body)
            if answer.status_code != 201:
                failures.append(answer.get_json())

    def builder() -> None:  # warehouses added and edited while the balances move
        client = Caller(inventory_app.test_client())
        for n in range(6):
            made = client.post("/api/v1/warehouses", {
                "code": f"LP-T{n + 10}", "name": f"Township {n}", "level": "township",
                "parent": "LP"})
            edited = client.patch("/api/v1/warehouses/KL-T02",
                                  {"status": "closed" if n % 2 else "active"})
            if made.status_code != 201 or edited.status_code != 200:
                failures.append((made.get_json(), edited.get_json()))

    writers = [threading.Thread(target=keeper, args=(n,)) for n in range(4)]
    writers.append(threading.Thread(target=builder))
    for writer in writers:
        writer.start()
    try:
        while any(writer.is_alive() for writer in writers):
            kept = merged(kept, read(inv, kept.version))
    finally:
        for writer in writers:
            writer.join()
    assert failures == []
    kept = merged(kept, read(inv, kept.version))
    fresh = merged(None, read(inv))
    assert balances(kept) == balances(fresh)
    assert kept.warehouses == fresh.warehouses
    assert len(fresh.warehouses["code"]) == known + 6
    assert len(kept.stock) == len(fresh.stock)


def test_a_write_in_flight_during_the_read_comes_with_the_next(inv, inventory_db):
    """The write begins before the read and commits after it: its stamp is older than the
    read's version (on PostgreSQL, a transaction the read's snapshot saw running), and it must
    still come back next time. (SQLite cannot have it: its reads wait for the writer.)"""
    if inventory_db.engine.dialect.name != "postgresql":
        pytest.skip("on SQLite a read waits for the writer (BEGIN IMMEDIATE)")
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    kept = merged(None, read(inv))
    with inventory_db.engine.connect() as writer:
        transaction = writer.begin()
        writer.execute(text("UPDATE stock SET min = 7 WHERE warehouse_id = "
                            "(SELECT id FROM warehouses WHERE code = 'KL')"))
        receive(inv, "LP", "TENT", 1)  # begun after the write, committed before the read
        during = read(inv, kept.version)  # the write is not committed: not seen
        assert changed_keys(during, kept.warehouses["code"]) == {("LP", "TENT")}
        kept = merged(kept, during)
        transaction.commit()
    after = read(inv, kept.version)
    assert ("KL", "TENT") in changed_keys(after, kept.warehouses["code"])
    assert balances(merged(kept, after))[("KL", "TENT")][4] == 7


def test_a_warehouse_that_comes_in_below_the_last_one_read_gets_everything(inv, inventory_db):
    """Two warehouses added at once commit out of order: the one with the lower id comes after
    the reader saw the higher. The reader's positions no longer hold, so it gets the whole
    list again (PostgreSQL only: on SQLite writers take turns)."""
    if inventory_db.engine.dialect.name != "postgresql":
        pytest.skip("on SQLite writers take turns")
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    kept = merged(None, read(inv))
    with inventory_db.engine.connect() as writer:
        transaction = writer.begin()
        writer.execute(text(
            "INSERT INTO warehouses (code, name, level, parent_id, path, status, created_at, "
            "updated_at) SELECT 'KL-T08', 'Township 8', 'township', id, '/QDN/KL/KL-T08/', "
            "'active', now(), now() FROM warehouses WHERE code = 'KL'"))
        made = inv.post("/api/v1/warehouses", {"code": "KL-T09", "name": "Township 9",
                                               "level": "township", "parent": "KL"})
        assert made.status_code == 201
        ahead = read(inv, kept.version)
        assert ahead["full"] is False and ahead["warehouses"]["code"] == ["KL-T09"]
        kept = merged(kept, ahead)
        transaction.commit()
    behind = read(inv, kept.version)
    assert behind["full"] is True
    kept = merged(kept, behind)
    assert kept.warehouses["code"][-2:] == ["KL-T08", "KL-T09"]
    assert kept.warehouses == merged(None, read(inv)).warehouses


def test_a_version_from_a_database_since_replaced_gets_everything(inv):
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    mark, *rest = read(inv)["version"].split("~")
    ahead = "99999999999" if mark.isdigit() else "99999999999:99999999999:"
    answer = read(inv, "~".join([ahead, *rest]))
    assert answer["full"] is True and answer["warehouses"] is not None
    assert len(answer["stock"]["warehouse"]) == 1


def test_the_kept_network_is_read_whole_again_when_its_version_is_refused(inv, allocation_app):
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    inventory = allocation_app.extensions["allocation"].inventory
    first = inventory.network()
    assert balances(first)[("KL", "TENT")][0] == 10
    first.version = "not~a~version~at all"  # as from an older inventory, or garbled
    receive(inv, "KL", "TENT", 5)
    again = inventory.network()
    assert again.version != first.version and balances(again)[("KL", "TENT")][0] == 15


def watch(inventory) -> list[tuple[str, bool]]:
    """The paths the allocation asks the inventory for, and whether on the plan's thread."""
    calls, real = [], inventory.client.call

    def watched(method, path, *args, **kwargs):
        calls.append((path, threading.current_thread() is threading.main_thread()))
        return real(method, path, *args, **kwargs)

    inventory.client.call = watched
    return calls


def settle() -> None:
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and thread.daemon:
            thread.join(timeout=10)


def test_the_safety_net_checks_the_sums_aside_and_reads_nothing_whole_when_they_agree(
        inv, allocation_app):
    """Now and then the kept network is checked against the inventory's sums, in a thread of
    its own: the plan that finds it due goes on with what changed, and a network that adds up
    is not read again."""
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    inventory = allocation_app.extensions["allocation"].inventory
    inventory.network()
    inventory._full_at = float("-inf")  # due
    receive(inv, "KL", "TENT", 5)
    calls = watch(inventory)
    due = inventory.network()
    assert balances(due)[("KL", "TENT")][0] == 15
    settle()
    assert [path for path, plan in calls if not plan] == [
        path for path, _ in calls if "digest=true" in path]  # the check, aside
    assert len([path for path, plan in calls if not plan]) == 1
    assert all("since=" in path and "digest" not in path for path, plan in calls if plan)


def test_a_kept_network_that_does_not_add_up_is_read_whole_again_aside(inv, allocation_app):
    """A change the refreshes missed (here the kept network's own numbers made wrong) shows in
    the sums: the whole network is then read again, aside, and takes the kept one's place
    without losing what plans brought in meanwhile."""
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    receive(inv, "LP", "QUILT", 4)
    inventory = allocation_app.extensions["allocation"].inventory
    kept = inventory.network()
    wrong = kept.stock.base.numbers["on_hand"].copy()
    wrong[0] += 1
    kept.stock.base.numbers["on_hand"] = wrong  # as if a write had been missed
    inventory._full_at = float("-inf")  # due
    calls = watch(inventory)
    inventory.network()
    settle()
    assert (SNAPSHOT, False) in calls  # the whole read, not on the plan's thread
    receive(inv, "LP", "TENT", 2)
    after = inventory.network()
    assert balances(after) == balances(merged(None, read(inv)))


def test_the_digest_adds_up_the_whole_network_whatever_the_answer_holds(inv, inventory_db):
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    receive(inv, "LP", "QUILT", 4)
    first = inv.get(SNAPSHOT + "?digest=true").get_json()
    stock = first["stock"]
    assert first["digest"] == {"balances": 2, **{name: sum(stock[name]) for name in (
        "on_hand", "available", "expired", "in_transit", "min", "target")}}
    receive(inv, "KL", "TENT", 5)
    later = inv.get(SNAPSHOT + f"?since={quote(first['version'])}&digest=true").get_json()
    assert len(later["stock"]["warehouse"]) == 1
    assert later["digest"]["balances"] == 2 and later["digest"]["on_hand"] == 19
    assert "digest" not in read(inv)


def test_a_read_in_slices_of_rows_is_the_read_in_one(inv, inventory_db, monkeypatch):
    from inventory_svc import snapshot

    build_tree(inv)
    for code, item, quantity in [("QDN", "TENT", 7), ("KL", "QUILT", 3), ("LP", "TENT", 5),
                                 ("KL-T01", "WATER", 9), ("KL", "TENT", 2)]:
        receive(inv, code, item, quantity)
    whole = read(inv)
    monkeypatch.setattr(snapshot, "SLICE", 2)
    sliced = read(inv)
    assert sliced["stock"] == whole["stock"] and len(sliced["stock"]["warehouse"]) == 5


def test_whole_reads_asked_together_are_made_once(inv, inventory_app, monkeypatch):
    """Allocation workers warming at once: the second whole read waits for the first and
    answers the same; a `since` read is never shared."""
    from inventory_svc import snapshot

    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    real, made, started, release = snapshot.snapshot, [], threading.Event(), threading.Event()

    def slow(session, items, since=None, digest=False):
        made.append(since)
        if since is None:
            started.set()
            assert release.wait(10)
        return real(session, items, since, digest)

    monkeypatch.setattr(snapshot, "snapshot", slow)
    answers = []

    def reader():
        answers.append(Caller(inventory_app.test_client()).get(SNAPSHOT).get_json())

    first = threading.Thread(target=reader)
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=reader)
    second.start()
    time.sleep(0.3)  # the second is waiting on the first
    release.set()
    first.join(10)
    second.join(10)
    assert made == [None] and len(answers) == 2 and answers[0] == answers[1]
    assert answers[0]["stock"]["on_hand"] == [10]
    read(inv, answers[0]["version"])
    read(inv)
    assert made == [None, answers[0]["version"], None]  # the next whole read is made anew


def test_an_inventory_that_refuses_the_check_gets_the_whole_read_aside(inv, allocation_app):
    """An inventory of before the digest (422 on the unknown parameter): the safety net falls
    back to reading everything, as it did."""
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    inventory = allocation_app.extensions["allocation"].inventory
    inventory.network()
    inventory._full_at = float("-inf")  # due
    calls, real = watch(inventory), inventory.client.call

    def older(method, path, *args, **kwargs):
        if "digest=" in path:
            raise RemoteError("inventory", 422, {"detail": "unknown parameter digest"})
        return real(method, path, *args, **kwargs)

    inventory.client.call = older
    receive(inv, "KL", "TENT", 1)
    inventory.network()
    settle()
    assert (SNAPSHOT, False) in calls
    assert balances(inventory.network())[("KL", "TENT")][0] == 11


def test_a_check_answered_with_everything_keeps_what_it_was_given(inv, allocation_app):
    """The inventory may answer a check with everything (the warehouses' positions no longer
    hold): that answer takes the kept network's place, no second read."""
    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    inventory = allocation_app.extensions["allocation"].inventory
    kept = inventory.network()
    inventory._full_at = float("-inf")  # due
    real = inventory.client.call

    def everything(method, path, *args, **kwargs):
        if "digest=" in path:
            path = SNAPSHOT + "?digest=true"  # as if `since` could not be answered
        return real(method, path, *args, **kwargs)

    inventory.client.call = everything
    calls = watch(inventory)
    receive(inv, "KL", "TENT", 1)
    refreshed = inventory.network()  # the check's answer is put in place after this one
    settle()
    assert [path for path, plan in calls if not plan] == [SNAPSHOT + "?since=" + quote(
        kept.version, safe="") + "&digest=true"]
    assert inventory._network is not refreshed
    assert inventory._network.stock.totals()["on_hand"] == 11


def test_only_a_whole_read_pauses_the_cycle_collector(inv, inventory_db, monkeypatch):
    """A `since` read is a few rows and comes with every plan: pausing the collector for it
    too would leave it paused while such reads overlap."""
    import contextlib

    from inventory_svc import snapshot

    build_tree(inv)
    receive(inv, "KL", "TENT", 10)
    paused = []

    @contextlib.contextmanager
    def counted():
        paused.append(True)
        yield

    monkeypatch.setattr(snapshot, "many_rows", counted)
    first = read(inv)
    assert len(paused) == 2  # the warehouses and the balances
    receive(inv, "KL", "TENT", 1)
    inv.patch("/api/v1/warehouses/KL-T02", {"status": "closed"})
    later = read(inv, first["version"])
    assert later["full"] is False and later["warehouses"] and later["stock"]["warehouse"]
    assert len(paused) == 2
