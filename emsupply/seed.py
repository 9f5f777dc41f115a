"""Loading a data set into the suite through its API, so that every row passes the same checks,
ledger and events as a keeper's. Idempotent: a second run finds everything there and changes
nothing (what exists is read first, including the first ledger line of each batch of stock
receipts; the receipts also carry idempotency keys derived from the data set, so a batch that
is sent twice all the same counts once).

Over HTTP the calls of one phase run `client.parallel` at a time (warehouses level by level,
parents first); in this process they run one after another."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from urllib.parse import urlencode

from allocation_svc.geojson import roads_geojson
from emsupply.dataset import LEVELS, DataSet
from emsupply.suite import ApiError, SuiteClient

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
            written["items"] += _create(client, "/api/v1/items", item)

    have = {row["code"] for row in client.pages("/api/v1/warehouses")}
    missing = [w for w in data.warehouses if w["code"] not in have]
    with progress("warehouses", len(missing)) as bar:
        for level in LEVELS:  # parents before their children
            rows = [{k: v for k, v in w.items() if v is not None}
                    for w in missing if w["level"] == level]
            for made in client.map(lambda row: _create(client, "/api/v1/warehouses", row), rows):
                written["warehouses"] += made
                bar.update(1)

    doc = roads_geojson(data.roads)
    status, current = client.send("GET", "/api/v1/roads")
    if status != 200 or _fingerprint(current) != _fingerprint(doc):
        client.call("PUT", "/api/v1/roads", doc)
        written["roads"] = 1

    current_levels = {(row["warehouse"], row["item"]): (row["min"], row["target"])
                      for row in client.pages("/api/v1/stock")}
    by_warehouse: dict[str, list[dict]] = {}
    for level in data.levels:
        if current_levels.get((level["warehouse"], level["item"])) != (level["min"],
                                                                       level["target"]):
            by_warehouse.setdefault(level["warehouse"], []).append(
                {"item": level["item"], "min": level["min"], "target": level["target"]})
    with progress("levels", len(by_warehouse)) as bar:
        def put_levels(entry: tuple[str, list[dict]]) -> int:
            code, levels = entry
            client.call("PUT", f"/api/v1/warehouses/{code}/levels", {"levels": levels})
            return len(levels)

        for count in client.map(put_levels, by_warehouse.items()):
            written["levels"] += count
            bar.update(1)

    batches = [batch for batch in _batches(data.stock) if not _posted(client, batch[1])]
    with progress("stock", len(batches)) as bar:
        for count in client.map(lambda batch: _receive(client, *batch), batches):
            written["stock"] += count
            bar.update(1)
    return written


def _create(client: SuiteClient, path: str, row: dict) -> int:
    """1 if made, 0 if it was there already (made meanwhile, or by an earlier try)."""
    status, body = client.send("POST", path, row)
    if status == 201:
        return 1
    errors = body.get("errors") if isinstance(body, dict) else None
    if status == 409 and any(k in (errors or {}) for k in ("code", "sku")):
        return 0  # "already exists"
    raise ApiError("POST", path, status, body)


def _posted(client: SuiteClient, lines: list[dict]) -> bool:
    """Whether this batch is in the ledger already: batches are all or none, so its first
    line tells, found among the first lines of its stock card. (Cheaper than sending it again:
    the service answers a repeated key only after doing the work again and rolling it back.)
    When in doubt, False: the batch is sent, and its key keeps it from counting twice."""
    first = lines[0]
    query = urlencode({"warehouse": first["warehouse"], "item": first["item"], "limit": 20})
    status, page = client.send("GET", f"/api/v1/movements?{query}")
    if status != 200:
        return False
    return any(line["kind"] == "receipt" and line.get("reference") == first["reference"]
               and line["quantity"] == first["quantity"]
               and (line.get("lot") or "") == first.get("lot", "")
               and line.get("expires_on") == first.get("expires_on")
               for line in page["items"])


def _receive(client: SuiteClient, key: str, lines: list[dict]) -> int:
    """Post one batch of receipts; the number of lines written (0 when it was posted before,
    by this identity, which is answered again, or by another, which is refused as a reuse of
    the key: the key is derived from the lines, so the same lines are in)."""
    path = "/api/v1/movements/batch"
    answer = client.request("POST", path, {"lines": lines}, {"Idempotency-Key": key})
    if answer.status == 201:
        return 0 if answer.headers.get("Idempotent-Replayed") else len(lines)
    body = answer.body if isinstance(answer.body, dict) else {}
    if answer.status == 422 and "Idempotency-Key" in (body.get("errors") or {}):
        return 0
    raise ApiError("POST", path, answer.status, answer.body)


def _batches(stock: list[dict]) -> Iterator[tuple[str, list[dict]]]:
    for start in range(0, len(stock), BATCH):
        lines = [{"warehouse": s["warehouse"], "item": s["item"], "kind": "receipt",
                  "quantity": s["quantity"], "reference": "seed",
                  **({"lot": s["lot"]} if s.get("lot") else {}),
                  **({"expires_on": s["expires_on"]} if s.get("expires_on") else {})}
                 for s in stock[start:start + BATCH]]
        digest = hashlib.sha256(json.dumps(lines, sort_keys=True).encode()).hexdigest()[:24]
        yield f"seed:{digest}", lines


STRUCTURE = ("id", "from", "to", "length_km", "road_class", "speed_kmh", "oneway")


def _fingerprint(doc: dict | None) -> str:
    """What makes two road documents the same network: ids, ends, lengths, classes, posted
    speeds and directions; not the state of the roads (a road closed since the seed stays
    closed when the seed runs again)."""
    if not isinstance(doc, dict):
        return ""
    parts = sorted(json.dumps([(f.get("properties") or {}).get(k) for k in STRUCTURE])
                   for f in doc.get("features", []))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()
