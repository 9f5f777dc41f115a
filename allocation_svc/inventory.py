"""What the allocation service asks of the inventory service: the `Inventory` it needs (plans,
incidents and restocking depend on that alone, so that tests drive them with a fake), and
`HttpInventory`, the same over the one service client."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import numpy as np

from allocation_svc.balances import Balances
from shared.auth import Identity
from shared.client import RemoteError, ServiceClient

log = logging.getLogger(__name__)
SERVICE = Identity("allocation-service", "service")
CHECK_EVERY_S = 600.0
# A whole network's read: a prefecture's is a fraction of a second, a nation's (500,000 depots,
# 2.7 million balances) tens of seconds; only the first plan of a process waits for it.
FULL_READ_TIMEOUT = (1.0, 300.0)
SNAPSHOT = "/api/v1/stock/snapshot"


@dataclass
class Network:
    """The warehouses (columns as the inventory sends them) and balances a plan is made from.
    Never changed once made: a newer one is a new object, so a plan in progress reads one
    consistent network while another thread brings the cache up to date."""

    warehouses: dict[str, list]
    stock: Balances
    version: str | None = None
    catalogue: int | None = None
    _places: Places | None = field(default=None, repr=False)
    # The road layout the nodes were found in, the nodes, and the rows of warehouses changed
    # or added since (looked up again on the next plan, not all 500,000).
    _nodes: tuple[Any, np.ndarray, frozenset[int]] | None = field(default=None, repr=False)

    def nodes(self, graph: Any) -> np.ndarray:
        """Each warehouse's node in the road graph (`RoadGraph.node_indexes`), kept while the
        warehouses and the graph's layout stay the same: a nation's 500,000 look-ups are not
        made again for every plan, nor for a warehouse edited."""
        road_node = self.warehouses["road_node"]
        if self._nodes is None or self._nodes[0] is not graph.layout:
            found = graph.node_indexes(road_node)
        elif self._nodes[2]:
            rows = sorted(self._nodes[2])
            found = np.full(len(road_node), -1, dtype=np.int64)
            found[:len(self._nodes[1])] = self._nodes[1]
            found[rows] = graph.node_indexes([road_node[row] for row in rows])
        else:
            return self._nodes[1]
        found.flags.writeable = False  # shared by the plans of this network
        self._nodes = (graph.layout, found, frozenset())
        return found

    def places(self) -> Places:
        """Each warehouse's county, township, level and status as arrays, made once per
        warehouses' version."""
        if self._places is None:
            self._places = Places.of(self.warehouses)
        return self._places


@dataclass(frozen=True)
class Places:
    township: np.ndarray
    county: np.ndarray
    level: np.ndarray
    status: np.ndarray

    @classmethod
    def of(cls, warehouses: dict[str, list], at: list[int] | None = None) -> Places:
        """The places of the warehouses at rows `at` (all when None)."""
        rows = range(len(warehouses["code"])) if at is None else at
        paths = [[p for p in warehouses["path"][i].split("/") if p] for i in rows]
        return cls(township=np.array([p[2] if len(p) > 2 else None for p in paths], dtype=object),
                   county=np.array([p[1] if len(p) > 1 else None for p in paths], dtype=object),
                   level=np.array([warehouses["level"][i] for i in rows], dtype=object),
                   status=np.array([warehouses["status"][i] for i in rows], dtype=object))

    def updated(self, warehouses: dict[str, list], at: list[int]) -> Places:
        """The same with the warehouses at rows `at` of `warehouses` changed or added."""
        size, new = len(warehouses["code"]), Places.of(warehouses, at)
        columns = {}
        for name in ("township", "county", "level", "status"):
            column = np.empty(size, dtype=object)
            old = getattr(self, name)
            column[:len(old)] = old
            column[at] = getattr(new, name)
            columns[name] = column
        return Places(**columns)


def merged(network: Network | None, answer: dict[str, Any]) -> Network:
    """`network` brought up to date by a snapshot answer: the whole of a full one, or the rows
    of one `since` its version replacing theirs (new balances and warehouses appended). What
    did not change is shared, so that a plan's refresh stays small however large the
    network."""
    if network is None or answer.get("full", True):
        return Network(answer["warehouses"], Balances.of(answer["stock"]),
                       answer.get("version"), answer.get("catalogue"))
    warehouses, places, nodes = network.warehouses, network._places, network._nodes
    if answer.get("warehouses"):
        warehouses = _replaced(warehouses, answer["warehouses"])
        at = answer["warehouses"].get("position")
        places = places.updated(warehouses, at) if places and at is not None else None
        nodes = (nodes[0], nodes[1], nodes[2] | set(at)) if nodes and at is not None else None
    return Network(warehouses, network.stock.updated(answer["stock"]), answer.get("version"),
                   answer.get("catalogue"), places, nodes)


def _replaced(warehouses: dict[str, list], changed: dict[str, list]) -> dict[str, list]:
    """The warehouses' columns with the changed ones at their positions (one past the end is
    a warehouse added); a full list, from an older inventory, replaces them all."""
    if "position" not in changed:
        return changed
    result = {}
    for name, column in warehouses.items():
        column = list(column)
        for at, value in zip(changed["position"], changed[name], strict=True):
            if at < len(column):
                column[at] = value
            else:
                column.append(value)
        result[name] = column
    return result


class Inventory(Protocol):
    """The inventory as plans see it. Every write is idempotent by its `key`: the same key
    answers the first answer again. A refusal raises `shared.client.RemoteError` with its
    status (409 for a shortfall, 404 for an unknown warehouse or hold); an inventory out of
    reach raises `Unavailable` or `UpstreamTimeout`, and then a write may or may not be done."""

    def network(self, items: list[str] | None = None) -> Network:
        """Every warehouse, and the balances of `items` (all items when none; the answer may
        hold other items' balances too), as the inventory holds them now."""
        ...

    def warehouse(self, code: str) -> dict[str, Any]:
        ...

    def items(self) -> list[dict[str, Any]]:
        ...

    def reserve(self, key: str, lines: list[dict], ttl_s: int, reference: str) -> dict[str, Any]:
        """Hold every line or none; answers the hold with its `id`."""
        ...

    def commit(self, reservation_id: int, key: str) -> dict[str, Any]:
        """Issue the held stock: it leaves the depots."""
        ...

    def release(self, reservation_id: int, key: str) -> dict[str, Any]:
        ...

    def release_part(self, reservation_id: int, key: str, lines: list[dict]) -> dict[str, Any]:
        ...

    def transfers(self, key: str, transfers: list[dict]) -> list[dict[str, Any]]:
        """Send every transfer (source, destination, lines, reason, reference) or none, in
        one call; answers them in order, each with its `id`."""
        ...


class HttpInventory:
    """`Inventory` over HTTP, signed as the allocation service. It keeps the network (every
    balance of every item) and brings it up to date by what changed since its version, a few
    rows a plan instead of the whole prefecture; and the catalogue, read again when the
    inventory says it has another number of items (items are only ever added)."""

    def __init__(self, client: ServiceClient):
        self.client = client
        self._lock = threading.Lock()
        self._network: Network | None = None
        self._full_at = float("-inf")
        self._items: tuple[int | None, list[dict[str, Any]]] | None = None
        self._checking = threading.Lock()

    def network(self, items: list[str] | None = None) -> Network:
        with self._lock:  # one refresh at a time; the next thread's is then a small one
            kept = self._network
            if kept is not None and kept.version and \
                    time.monotonic() - self._full_at > CHECK_EVERY_S:
                self._full_at = time.monotonic()  # now and then a check, aside: a safety net
                threading.Thread(target=self._check, args=(kept,), daemon=True).start()
            if kept is None or not kept.version:
                return self._whole()
            try:
                answer = self.client.call("GET", SNAPSHOT + "?" + urlencode(
                    {"since": kept.version}), SERVICE)
            except RemoteError as exc:
                if exc.status != 422:
                    raise
                return self._whole()
            self._network = merged(kept, answer)
            return self._network

    def _whole(self) -> Network:
        self._network = merged(None, self.client.call("GET", SNAPSHOT, SERVICE,
                                                      timeout=FULL_READ_TIMEOUT))
        self._full_at = time.monotonic()
        return self._network

    def _check(self, kept: Network) -> None:
        """The kept network checked against the inventory's own sums (`digest`) while plans go
        on: brought up to the inventory's version on a copy, it must add up to them. Only when
        it does not (a change the refreshes missed) is the whole network read again: a nation's
        is seconds of the inventory's time and a GiB of its memory, the check under a second
        of the database's."""
        if not self._checking.acquire(blocking=False):
            return
        try:
            try:
                answer = self.client.call("GET", SNAPSHOT + "?" + urlencode(
                    {"since": kept.version, "digest": "true"}), SERVICE,
                    timeout=FULL_READ_TIMEOUT)
            except RemoteError as exc:
                if exc.status != 422:  # an inventory without the digest, or a version refused
                    raise
                self._read_whole()
                return
            if answer.get("full"):  # the inventory answered everything: keep it
                with self._lock:
                    self._network = merged(None, answer)
                return
            found = merged(kept, answer).stock.totals()
            if found == answer.get("digest"):
                return
            log.warning("the kept network adds up to %s, the inventory's to %s: reading it "
                        "all again", found, answer.get("digest"))
            self._read_whole()
        except Exception:  # the kept network goes on; the next safety net tries again
            log.warning("the kept network could not be checked", exc_info=True)
        finally:
            self._checking.release()

    def _read_whole(self) -> None:
        """The whole network read while plans go on with the kept one, then put in its place:
        its version is older than what plans brought in meanwhile, so the next refresh asks
        again for those changes."""
        answer = self.client.call("GET", SNAPSHOT, SERVICE, timeout=FULL_READ_TIMEOUT)
        with self._lock:
            self._network = merged(None, answer)

    def forget(self) -> None:
        """Read everything afresh next time (after the inventory refused what the kept
        network said it had)."""
        with self._lock:
            self._network = None

    def warehouse(self, code: str) -> dict[str, Any]:
        return self.client.call("GET", f"/api/v1/warehouses/{code}", SERVICE)

    def items(self) -> list[dict[str, Any]]:
        known = self._network.catalogue if self._network is not None else None
        kept = self._items
        if kept is not None and known is not None and kept[0] == known:
            return kept[1]
        found, cursor = [], None
        while True:
            path = "/api/v1/items?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            body = self.client.call("GET", path, SERVICE)
            found.extend(body["items"])
            cursor = body.get("next_cursor")
            if not cursor:
                self._items = (len(found), found)
                return found

    def reserve(self, key: str, lines: list[dict], ttl_s: int, reference: str) -> dict[str, Any]:
        return self.client.call("POST", "/api/v1/reservations", SERVICE,
                                {"lines": lines, "ttl_seconds": ttl_s, "reference": reference},
                                idempotency_key=key)

    def commit(self, reservation_id: int, key: str) -> dict[str, Any]:
        return self.client.call("POST", f"/api/v1/reservations/{reservation_id}/commit", SERVICE,
                                idempotency_key=key)

    def release(self, reservation_id: int, key: str) -> dict[str, Any]:
        return self.client.call("POST", f"/api/v1/reservations/{reservation_id}/release",
                                SERVICE, idempotency_key=key)

    def release_part(self, reservation_id: int, key: str, lines: list[dict]) -> dict[str, Any]:
        return self.client.call("POST", f"/api/v1/reservations/{reservation_id}/release",
                                SERVICE, {"lines": lines}, idempotency_key=key)

    def transfers(self, key: str, transfers: list[dict]) -> list[dict[str, Any]]:
        return self.client.call("POST", "/api/v1/transfers/batch", SERVICE,
                                {"transfers": transfers}, idempotency_key=key)["transfers"]
