"""What the allocation service asks of the inventory service: the `Inventory` it needs (plans,
incidents and restocking depend on that alone, so that tests drive them with a fake), and
`HttpInventory`, the same over the one service client."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

import numpy as np

from shared.auth import Identity
from shared.client import RemoteError, ServiceClient

SERVICE = Identity("allocation-service", "service")
FULL_READ_EVERY_S = 600.0


@dataclass
class Network:
    """The warehouses and balances a plan is made from (columns as the inventory sends them).
    Never changed once made: a newer one is a new object, so a plan in progress reads one
    consistent network while another thread brings the cache up to date."""

    warehouses: dict[str, list]
    stock: dict[str, list]
    version: str | None = None
    catalogue: int | None = None
    rows: dict[tuple[int, str], int] = field(default_factory=dict, repr=False)
    _arrays: Arrays | None = field(default=None, repr=False)
    _places: Places | None = field(default=None, repr=False)

    def index(self) -> dict[str, int]:
        return {code: i for i, code in enumerate(self.warehouses["code"])}

    def arrays(self) -> Arrays:
        """The balances as numbers for the solver's depot table, made once per network."""
        if self._arrays is None:
            s = self.stock
            numbers: dict[str, int] = {}
            self._arrays = Arrays(
                warehouse=np.asarray(s["warehouse"], dtype=np.int64),
                item=np.fromiter((numbers.setdefault(sku, len(numbers)) for sku in s["item"]),
                                 dtype=np.int64, count=len(s["item"])),
                skus=numbers, available=np.asarray(s["available"], dtype=np.int64),
                min=np.asarray(s["min"], dtype=np.int64))
        return self._arrays


    def places(self) -> Places:
        """Each warehouse's county, township, level and status as arrays, made once per
        warehouses' version."""
        if self._places is None:
            w = self.warehouses
            paths = [[p for p in path.split("/") if p] for path in w["path"]]
            self._places = Places(
                township=np.array([p[2] if len(p) > 2 else None for p in paths], dtype=object),
                county=np.array([p[1] if len(p) > 1 else None for p in paths], dtype=object),
                level=np.array(w["level"], dtype=object),
                status=np.array(w["status"], dtype=object))
        return self._places


@dataclass(frozen=True)
class Places:
    township: np.ndarray
    county: np.ndarray
    level: np.ndarray
    status: np.ndarray


@dataclass(frozen=True)
class Arrays:
    warehouse: np.ndarray  # each balance's row in the warehouses
    item: np.ndarray  # each balance's item, as its number in `skus`
    skus: dict[str, int]
    available: np.ndarray
    min: np.ndarray

    def updated(self, at: list[int], available: list[int], least: list[int]) -> Arrays:
        """The same with the balances at rows `at` changed (none added)."""
        now, floor = self.available.copy(), self.min.copy()
        now[at], floor[at] = available, least
        return Arrays(self.warehouse, self.item, self.skus, now, floor)


def merged(network: Network | None, answer: dict[str, Any]) -> Network:
    """`network` brought up to date by a snapshot answer: the whole of a full one, or the rows
    of one `since` its version replacing theirs (new balances appended)."""
    if network is None or answer.get("full", True):
        stock = answer["stock"]
        rows = {key: i for i, key in enumerate(zip(stock["warehouse"], stock["item"],
                                                   strict=True))}
        return Network(answer["warehouses"], stock, answer.get("version"),
                       answer.get("catalogue"), rows)
    changed = answer["stock"]
    warehouses = answer.get("warehouses") or network.warehouses
    places = network._places if warehouses is network.warehouses else None
    if not changed["warehouse"]:
        return Network(warehouses, network.stock, answer.get("version"),
                       answer.get("catalogue"), network.rows, network._arrays, places)
    stock = {name: list(column) for name, column in network.stock.items()}
    rows = dict(network.rows)
    spots = []
    for i, key in enumerate(zip(changed["warehouse"], changed["item"], strict=True)):
        at = rows.get(key)
        if at is None:
            rows[key] = at = len(stock["warehouse"])
            for name, column in stock.items():
                column.append(changed[name][i])
        else:
            for name, column in stock.items():
                column[at] = changed[name][i]
        spots.append(at)
    arrays = None
    if network._arrays is not None and len(rows) == len(network.rows):  # nothing new
        arrays = network._arrays.updated(spots, changed["available"], changed["min"])
    return Network(warehouses, stock, answer.get("version"), answer.get("catalogue"), rows,
                   arrays, places)


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

    def network(self, items: list[str] | None = None) -> Network:
        with self._lock:  # one refresh at a time; the next thread's is then a small one
            kept = self._network
            if time.monotonic() - self._full_at > FULL_READ_EVERY_S:
                kept = None  # now and then everything again: a safety net, not a need
            path = "/api/v1/stock/snapshot"
            if kept is not None and kept.version:
                path += "?" + urlencode({"since": kept.version})
            try:
                answer = self.client.call("GET", path, SERVICE)
            except RemoteError as exc:
                if exc.status != 422 or kept is None:
                    raise
                kept, answer = None, self.client.call("GET", "/api/v1/stock/snapshot", SERVICE)
            if kept is None:
                self._full_at = time.monotonic()
            self._network = merged(kept, answer)
            return self._network

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
