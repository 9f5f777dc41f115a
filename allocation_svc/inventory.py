"""What the allocation service asks of the inventory service: the `Inventory` it needs (plans,
incidents and restocking depend on that alone, so that tests drive them with a fake), and
`HttpInventory`, the same over the one service client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from shared.auth import Identity
from shared.client import ServiceClient

SERVICE = Identity("allocation-service", "service")


@dataclass
class Network:
    """The warehouses and balances a plan is made from (columns as the inventory sends them)."""

    warehouses: dict[str, list]
    stock: dict[str, list]

    def index(self) -> dict[str, int]:
        return {code: i for i, code in enumerate(self.warehouses["code"])}


class Inventory(Protocol):
    """The inventory as plans see it. Every write is idempotent by its `key`: the same key
    answers the first answer again. A refusal raises `shared.client.RemoteError` with its
    status (409 for a shortfall, 404 for an unknown warehouse or hold); an inventory out of
    reach raises `Unavailable` or `UpstreamTimeout`, and then a write may or may not be done."""

    def network(self, items: list[str] | None = None) -> Network:
        """Every warehouse, and the balances of `items` (all items when none)."""
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
    """`Inventory` over HTTP, signed as the allocation service."""

    def __init__(self, client: ServiceClient):
        self.client = client

    def network(self, items: list[str] | None = None) -> Network:
        query = urlencode([("item", sku) for sku in sorted(set(items or []))])
        body = self.client.call("GET", "/api/v1/stock/snapshot" + (f"?{query}" if query else ""),
                                SERVICE)
        return Network(body["warehouses"], body["stock"])

    def warehouse(self, code: str) -> dict[str, Any]:
        return self.client.call("GET", f"/api/v1/warehouses/{code}", SERVICE)

    def items(self) -> list[dict[str, Any]]:
        found, cursor = [], None
        while True:
            path = "/api/v1/items?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            body = self.client.call("GET", path, SERVICE)
            found.extend(body["items"])
            cursor = body.get("next_cursor")
            if not cursor:
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
