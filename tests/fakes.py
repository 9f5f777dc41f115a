"""An inventory in memory for the allocation service's unit tests: the `Inventory` interface
with the rules plans rely on (holds all or none, every write idempotent by its key, refusals
included; commit issues, release frees) and no HTTP."""

from __future__ import annotations

import copy
from typing import Any

from factories import TREE, road_node

from allocation_svc.balances import Balances
from allocation_svc.inventory import Network
from shared.client import RemoteError
from shared.errors import Unavailable, UpstreamTimeout


class FakeInventory:
    """`unreachable` names operations that fail as if the inventory were down (nothing done);
    `late` names operations whose next call is done but its answer lost (a read timeout)."""

    def __init__(self, tree: list[dict] | None = None):
        self.warehouses: dict[str, dict[str, Any]] = {}
        for warehouse in tree or TREE:
            parent = self.warehouses.get(warehouse.get("parent"))
            path = [*(parent["path"] if parent else []), warehouse["code"]]
            self.warehouses[warehouse["code"]] = {
                "code": warehouse["code"], "level": warehouse["level"], "path": path,
                "status": warehouse.get("status", "active"),
                "road_node": road_node(warehouse["code"])}
        self.balances: dict[tuple[str, str], dict[str, int]] = {}
        self.catalog: list[dict[str, Any]] = []
        self.holds: dict[int, dict[str, Any]] = {}
        self.sent: list[dict[str, Any]] = []  # transfers made
        self.answers: dict[str, tuple[Any, Any]] = {}  # key -> (request, answer or refusal)
        self.unreachable: set[str] = set()
        self.late: set[str] = set()
        self.calls: list[str] = []

    # -- test helpers ------------------------------------------------------------------------
    def receive(self, warehouse: str, item: str, quantity: int, **levels: int) -> None:
        balance = self._balance(warehouse, item)
        balance["on_hand"] += quantity
        balance.update(levels)

    def issue(self, warehouse: str, item: str, quantity: int) -> None:
        """Stock that leaves without a plan (a keeper's issue between a plan and its hold)."""
        self._balance(warehouse, item)["on_hand"] -= quantity

    def stock(self, warehouse: str, item: str) -> dict[str, int]:
        return dict(self._balance(warehouse, item))

    def reserved(self) -> int:
        return sum(balance["reserved"] for balance in self.balances.values())

    # -- the Inventory interface -------------------------------------------------------------
    def network(self, items: list[str] | None = None) -> Network:
        self._reach("network")
        codes = list(self.warehouses)
        rows = [(codes.index(w), i, b) for (w, i), b in self.balances.items()
                if not items or i in items]
        return Network(
            warehouses={"code": codes,
                        "level": [self.warehouses[c]["level"] for c in codes],
                        "path": ["/" + "/".join(self.warehouses[c]["path"]) + "/" for c in codes],
                        "status": [self.warehouses[c]["status"] for c in codes],
                        "road_node": [self.warehouses[c]["road_node"] for c in codes]},
            stock=Balances.of({
                "warehouse": [r for r, _i, _b in rows], "item": [i for _r, i, _b in rows],
                "on_hand": [b["on_hand"] for _r, _i, b in rows],
                "available": [b["on_hand"] - b["reserved"] for _r, _i, b in rows],
                "expired": [0 for _row in rows],  # the fake keeps no lots
                "in_transit": [self._in_transit(codes[r], i) for r, i, _b in rows],
                "min": [b["min"] for _r, _i, b in rows],
                "target": [b["target"] for _r, _i, b in rows]}))

    def warehouse(self, code: str) -> dict[str, Any]:
        self._reach("warehouse")
        if code not in self.warehouses:
            raise RemoteError("inventory", 404, {"detail": f"no warehouse {code}"})
        return copy.deepcopy(self.warehouses[code])

    def items(self) -> list[dict[str, Any]]:
        self._reach("items")
        return copy.deepcopy(self.catalog)

    def reserve(self, key: str, lines: list[dict], ttl_s: int, reference: str) -> dict[str, Any]:
        def hold():
            wanted: dict[tuple[str, str], int] = {}
            for line in lines:
                slot = (line["warehouse"], line["item"])
                wanted[slot] = wanted.get(slot, 0) + line["quantity"]
            short = [(w, i) for (w, i), q in wanted.items()
                     if self._balance(w, i)["on_hand"] - self._balance(w, i)["reserved"] < q]
            if short:
                raise RemoteError("inventory", 409, {
                    "detail": f"{len(short)} line(s) cannot be held: " + "; ".join(
                        f"{w} {i}" for w, i in short)})
            for (w, i), q in wanted.items():
                self._balance(w, i)["reserved"] += q
            hold_id = len(self.holds) + 1
            self.holds[hold_id] = {"id": hold_id, "status": "held", "reference": reference,
                                   "ttl_s": ttl_s, "lines": wanted}
            return {"id": hold_id, "status": "held"}
        return self._once("reserve", key, (lines, ttl_s, reference), hold)

    def commit(self, reservation_id: int, key: str) -> dict[str, Any]:
        def issue():
            hold = self._held(reservation_id)
            for (w, i), q in hold["lines"].items():
                self._balance(w, i)["reserved"] -= q
                self._balance(w, i)["on_hand"] -= q
            hold["status"] = "committed"
            return {"id": reservation_id, "status": "committed"}
        return self._once("commit", key, reservation_id, issue)

    def release(self, reservation_id: int, key: str) -> dict[str, Any]:
        def free():
            hold = self._held(reservation_id)
            for (w, i), q in hold["lines"].items():
                self._balance(w, i)["reserved"] -= q
            hold["lines"], hold["status"] = {}, "released"
            return {"id": reservation_id, "status": "released"}
        return self._once("release", key, reservation_id, free)

    def release_part(self, reservation_id: int, key: str, lines: list[dict]) -> dict[str, Any]:
        def free_some():
            hold = self._held(reservation_id)
            for line in lines:
                slot = (line["warehouse"], line["item"])
                hold["lines"][slot] -= line["quantity"]
                self._balance(*slot)["reserved"] -= line["quantity"]
            return {"id": reservation_id, "status": "held"}
        return self._once("release_part", key, (reservation_id, lines), free_some)

    def transfers(self, key: str, transfers: list[dict]) -> list[dict[str, Any]]:
        def send():
            made = []
            for wanted in transfers:
                for line in wanted["lines"]:
                    self._balance(wanted["source"], line["item"])["on_hand"] -= line["quantity"]
                self.sent.append({"id": len(self.sent) + 1, **wanted})
                made.append(self.sent[-1])
            return made
        return self._once("transfers", key, (transfers,), send)

    # -- inside ------------------------------------------------------------------------------
    def _balance(self, warehouse: str, item: str) -> dict[str, int]:
        return self.balances.setdefault((warehouse, item), {"on_hand": 0, "reserved": 0,
                                                            "min": 0, "target": 0})

    def _in_transit(self, warehouse: str, item: str) -> int:
        """What transfers bring to a balance: the fake receives none, so all of it."""
        return sum(line["quantity"] for transfer in self.sent
                   if transfer["destination"] == warehouse
                   for line in transfer["lines"] if line["item"] == item)

    def _held(self, reservation_id: int) -> dict[str, Any]:
        hold = self.holds.get(reservation_id)
        if hold is None:
            raise RemoteError("inventory", 404, {"detail": f"no reservation {reservation_id}"})
        if hold["status"] != "held":
            raise RemoteError("inventory", 409, {
                "detail": f"reservation {reservation_id} is {hold['status']}"})
        return hold

    def _reach(self, operation: str) -> None:
        self.calls.append(operation)
        if operation in self.unreachable:
            raise Unavailable("the inventory service is unreachable")

    def _once(self, operation: str, key: str, request: Any, work) -> dict[str, Any]:
        """The first answer for a key, refusals included; the same key with another request
        is 422, as the inventory's Idempotency-Key is."""
        self._reach(operation)
        if key in self.answers:
            first, answer = self.answers[key]
            if first != request:
                raise RemoteError("inventory", 422, {"detail": "key used with another body"})
        else:
            try:
                answer = work()
            except RemoteError as refusal:
                answer = refusal
            self.answers[key] = (copy.deepcopy(request), answer)
        if operation in self.late:
            self.late.discard(operation)
            raise UpstreamTimeout("the inventory service did not answer in time")
        if isinstance(answer, RemoteError):
            raise answer
        return dict(answer)
