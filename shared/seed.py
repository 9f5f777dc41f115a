"""Loading a data set into the suite through its API, so that every row passes the same checks,
ledger and events as a keeper's. Idempotent: a second run finds everything there and changes
nothing (stock receipts carry idempotency keys derived from the data set)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext

from allocation_svc.dataset import DataSet, roads_geojson
from shared.suite import ApiError, SuiteClient

BATCH = 500
Progress = Callable[[str, int], AbstractContextManager]


def _no_progress(label: str, length: int):
    class Bar:
        def update(self, n: int) -> None:
            pass

    return nullcontext(Bar())


def seed(client: SuiteClient, data: DataSet, progress: Progress = _no_progress) -> dict:
    """Create what is missing; answer how many rows of each kind were written."""
    written = {"items": 0, "warehouses": 0, "roads": 0, "levels": 0, "stock": 0}
    have = {row["sku"] for row in client.pages("/api/v1/items")}
    for item in data.items:
        if item["sku"] not in have:
            client.call("POST", "/api/v1/items", item)
            written["items"] += 1
    have = {row["code"] for row in client.pages("/api/v1/warehouses")}
    missing = [w for w in data.warehouses if w["code"] not in have]
    with progress("warehouses", len(missing)) as bar:
        for warehouse in missing:
            client.call("POST", "/api/v1/warehouses", {k: v for k, v in warehouse.items()
                                                       if v is not None})
            written["warehouses"] += 1
            bar.update(1)
    doc = roads_geojson(data.roads)
    status, current = client.send("GET", "/api/v1/roads")
    if status != 200 or _fingerprint(current) != _fingerprint(doc):
        client.call("PUT", "/api/v1/roads", doc)
        written["roads"] = 1
    by_warehouse: dict[str, list[dict]] = {}
    for level in data.levels:
        by_warehouse.setdefault(level["warehouse"], []).append(
            {"item": level["item"], "min": level["min"], "target": level["target"]})
    with progress("levels", len(by_warehouse)) as bar:
        for code, levels in by_warehouse.items():
            client.call("PUT", f"/api/v1/warehouses/{code}/levels", {"levels": levels})
            written["levels"] += len(levels)
            bar.update(1)
    batches = list(_batches(data.stock))
    with progress("stock", len(batches)) as bar:
        for key, lines in batches:
            answer = client.send("POST", "/api/v1/movements/batch", {"lines": lines},
                                 {"Idempotency-Key": key})
            if answer[0] != 201:
                raise ApiError("POST", "/api/v1/movements/batch", *answer)
            written["stock"] += len(lines)
            bar.update(1)
    return written


def _batches(stock: list[dict]) -> Iterator[tuple[str, list[dict]]]:
    for start in range(0, len(stock), BATCH):
        lines = [{"warehouse": s["warehouse"], "item": s["item"], "kind": "receipt",
                  "quantity": s["quantity"], "reference": "seed",
                  **({"lot": s["lot"]} if s.get("lot") else {}),
                  **({"expires_on": s["expires_on"]} if s.get("expires_on") else {})}
                 for s in stock[start:start + BATCH]]
        digest = hashlib.sha256(json.dumps(lines, sort_keys=True).encode()).hexdigest()[:24]
        yield f"seed:{digest}", lines


def _fingerprint(doc: dict | None) -> str:
    """What makes two road documents the same network (ids, ends, lengths, classes)."""
    if not isinstance(doc, dict):
        return ""
    parts = sorted(json.dumps(f.get("properties"), sort_keys=True)
                   for f in doc.get("features", []))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
