"""`emsupply import` and `emsupply export`: a prefecture's records as CSV (warehouses, items,
levels, stock) and its roads as GeoJSON, in and out through the suite's API.

An import reads the whole file and checks every row first, against the services' own schemas,
the rest of the file and what the suite already holds; it writes nothing while any row is bad
(unless asked to skip the bad rows) and reports every bad row by its line number. What it then
writes makes the suite hold what the file says, so importing the same file again changes
nothing:
- warehouses: missing ones are created (parents first), changed ones patched;
- items: missing ones are created (an item cannot be changed through the API, so one that
  differs is a bad row);
- levels: `min` and `target` set where they differ;
- stock: the file gives what is on hand (one row per lot); a balance that is empty receives
  the rows as receipts (lots and expiry dates kept), one that is not is counted (a stocktake to
  the file's total, which posts the difference as an adjustment).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TextIO

from marshmallow import ValidationError

from emsupply.suite import ApiError, SuiteClient

CSV_KINDS = ("warehouses", "items", "levels", "stock")
KINDS = (*CSV_KINDS, "roads")
LEVEL_ORDER = {"prefecture": 0, "county": 1, "township": 2, "village": 3}
PARENT_LEVEL = {"county": "prefecture", "township": "county", "village": "township"}
RECEIPT_BATCH = 500
Progress = Callable[[str, int], AbstractContextManager]


# --- columns ---------------------------------------------------------------------------------

def decode(raw: bytes) -> tuple[str, str]:
    """A file's text and the encoding it was read in: UTF-8 (with or without Excel's BOM), else
    GB18030, which Excel on a Chinese Windows saves as "CSV"."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8"), "UTF-8 with BOM"
    try:
        return raw.decode("utf-8"), "UTF-8"
    except UnicodeDecodeError:
        return raw.decode("gb18030"), "GB18030"


def _text(raw: str) -> str:
    return raw


def _number(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError
    return value


def _whole(raw: str) -> int:
    return int(raw)


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ValueError


def _day(raw: str) -> str:
    return date.fromisoformat(raw).isoformat()


def _type_norms(raw: str) -> dict[str, dict[str, float]]:
    """`snow_ice=0.25; flood=0.1/0`: per incident type, per person (and per person per day,
    after a slash). The types are checked by the item schema, the numbers here."""
    out: dict[str, dict[str, float]] = {}
    for entry in filter(None, (part.strip() for part in raw.split(";"))):
        kind, sep, numbers = entry.partition("=")
        once, _slash, daily = numbers.partition("/")
        if not sep or not kind.strip() or kind.strip() in out:
            raise ValueError
        out[kind.strip()] = {"per_person": _number(once),
                             "per_person_day": _number(daily) if daily.strip() else 0.0}
    return out


def _type_norms_cell(norms: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{kind}={n.get('per_person') or 0:g}/{n.get('per_person_day') or 0:g}"
                     for kind, n in sorted(norms.items()))


_EXPECTED = {_number: "a number", _whole: "a whole number", _boolean: "true or false",
             _day: "a date (YYYY-MM-DD)", _text: "text",
             _type_norms: "norms by incident type (snow_ice=0.25; flood=0.1/0)"}


@dataclass(frozen=True)
class Column:
    name: str
    parse: Callable[[str], Any] = _text
    required: bool = False


COLUMNS: dict[str, tuple[Column, ...]] = {
    "warehouses": (Column("code", required=True), Column("name", required=True),
                   Column("name_zh"), Column("level", required=True), Column("parent"),
                   Column("status"),
                   Column("lon", _number), Column("lat", _number), Column("road_node")),
    "items": (Column("sku", required=True), Column("name", required=True), Column("name_zh"),
              Column("unit", required=True), Column("category"),
              Column("unit_weight_kg", _number), Column("perishable", _boolean),
              Column("per_person", _number), Column("per_person_day", _number),
              Column("type_norms", _type_norms)),
    "levels": (Column("warehouse", required=True), Column("item", required=True),
               Column("min", _whole, True), Column("target", _whole, True)),
    "stock": (Column("warehouse", required=True), Column("item", required=True),
              Column("quantity", _whole, True), Column("lot"), Column("expires_on", _day)),
}


# --- problems and plans ----------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    line: int | None  # the CSV line (1 is the header), or None for the whole file
    field: str
    message: str
    where: str = "line"  # "feature" for GeoJSON, whose problems are by feature index

    def __str__(self) -> str:
        place = "file" if self.line is None else f"{self.where} {self.line}"
        return f"{place}: {self.field}: {self.message}" if self.field else \
            f"{place}: {self.message}"


@dataclass
class Write:
    method: str
    path: str
    body: Any
    rows: int  # how many rows of the file it carries
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportPlan:
    kind: str
    rows: int = 0
    writes: list[Write] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unchanged: int = 0
    bad_lines: set[int] = field(default_factory=set)

    def bad(self, line: int | None, field_name: str, message: str, where: str = "line") -> None:
        self.problems.append(Problem(line, field_name, message, where))
        if line is not None:
            self.bad_lines.add(line)

    @property
    def fatal(self) -> bool:
        """A problem with the file as a whole: nothing can be written, skipping or not."""
        return any(p.line is None for p in self.problems)


class Rows:
    """The data rows of a CSV file with their line numbers, parsed by column."""

    def __init__(self, kind: str, stream: TextIO, plan: ImportPlan,
                 skip: frozenset[int] = frozenset()):
        self.kind, self.plan, self.skip = kind, plan, skip
        self.columns = {c.name: c for c in COLUMNS[kind]}
        self.stream = stream

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        reader = csv.reader(self.stream)
        try:
            header = next(reader)
        except StopIteration:
            self.plan.bad(None, "", "the file is empty (expected a header line: "
                          f"{','.join(self.columns)})")
            return
        except csv.Error as exc:
            self.plan.bad(None, "", f"not CSV: {exc}")
            return
        header = [name.strip().lstrip("\ufeff") for name in header]
        unknown = [name for name in header if name not in self.columns]
        missing = [c.name for c in self.columns.values() if c.required and c.name not in header]
        doubled = sorted({name for name in header if header.count(name) > 1})
        if unknown or missing or doubled:
            parts = ([f"unknown columns {', '.join(unknown)}"] if unknown else []) + \
                    ([f"missing columns {', '.join(missing)}"] if missing else []) + \
                    ([f"columns named twice: {', '.join(doubled)}"] if doubled else [])
            self.plan.bad(None, "", "header: " + "; ".join(parts) +
                          f" (the columns are {','.join(self.columns)})")
            return
        line = reader.line_num
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self.plan.bad(reader.line_num, "", f"not CSV: {exc}")
                return
            start, line = line + 1, reader.line_num
            if not any(v.strip() for v in values) or start in self.skip:
                continue  # blank lines are no rows
            self.plan.rows += 1
            if len(values) != len(header):
                self.plan.bad(start, "", f"{len(values)} values for {len(header)} columns")
                continue
            row, good = {}, True
            for name, raw in zip(header, values, strict=True):
                raw = raw.strip()
                column = self.columns[name]
                if raw == "":
                    if column.required:
                        self.plan.bad(start, name, "required")
                        good = False
                    continue
                try:
                    row[name] = column.parse(raw)
                except ValueError:
                    self.plan.bad(start, name, f"{raw!r} is not {_EXPECTED[column.parse]}")
                    good = False
            if good:
                yield start, row


def _schema_problems(plan: ImportPlan, line: int, schema, row: dict) -> bool:
    try:
        schema.load(row)
    except ValidationError as exc:
        for name, messages in _flatten(exc.messages).items():
            plan.bad(line, name, "; ".join(messages))
        return False
    return True


def _flatten(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(messages, dict):
        out: dict[str, list[str]] = {}
        for key, inner in messages.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix or "row": [str(m) for m in (messages if isinstance(messages, list)
                                                else [messages])]}


# --- import: check everything, then write ----------------------------------------------------

def plan_import(client: SuiteClient, kind: str, stream: TextIO,
                skip: frozenset[int] = frozenset()) -> ImportPlan:
    """Read and check the whole file (but the records starting on the lines in `skip`); the
    writes that would make the suite hold it."""
    plan = ImportPlan(kind)
    if kind == "roads":
        _plan_roads(plan, stream)
    else:
        {"warehouses": _plan_warehouses, "items": _plan_items, "levels": _plan_levels,
         "stock": _plan_stock}[kind](client, plan, Rows(kind, stream, plan, skip))
    return plan


def _plan_items(client: SuiteClient, plan: ImportPlan, rows: Rows) -> None:
    from inventory_svc.schemas import ItemIn

    schema = ItemIn()
    have = {row["sku"]: row for row in client.pages("/api/v1/items")}
    seen: dict[str, int] = {}
    for line, row in rows:
        if not _schema_problems(plan, line, schema, row):
            continue
        sku = row["sku"]
        if sku in seen:
            plan.bad(line, "sku", f"{sku} is also on line {seen[sku]}")
            continue
        seen[sku] = line
        wanted = schema.dump(schema.load(row))
        if sku in have:
            differ = sorted(k for k, v in wanted.items() if have[sku].get(k) != v)
            if differ:
                plan.bad(line, ",".join(differ), f"item {sku} exists with other values "
                         "(an item cannot be changed through the API)")
            else:
                plan.unchanged += 1
            continue
        plan.writes.append(Write("POST", "/api/v1/items", wanted, 1))


def _plan_warehouses(client: SuiteClient, plan: ImportPlan, rows: Rows) -> None:
    from inventory_svc.schemas import WarehouseIn

    schema = WarehouseIn()
    have = {row["code"]: row for row in client.pages("/api/v1/warehouses")}
    seen: dict[str, tuple[int, dict]] = {}
    for line, row in rows:
        if not _schema_problems(plan, line, schema, row):
            continue
        code = row["code"]
        if code in seen:
            plan.bad(line, "code", f"{code} is also on line {seen[code][0]}")
            continue
        seen[code] = (line, schema.load(row))
    level_of = {code: w["level"] for code, w in have.items()}
    level_of.update({code: data["level"] for code, (_, data) in seen.items()})
    creates, patches = [], []
    for code, (line, data) in seen.items():
        parent, expected = data.get("parent"), PARENT_LEVEL.get(data["level"])
        if expected is None and parent:
            plan.bad(line, "parent", "the prefecture depot has no parent")
            continue
        if expected and not parent:
            plan.bad(line, "parent", f"required: the code of a {expected}")
            continue
        if parent and parent not in level_of:
            plan.bad(line, "parent", f"no warehouse {parent} in the file or the suite")
            continue
        if parent and level_of[parent] != expected:
            plan.bad(line, "parent", f"{parent} is a {level_of[parent]}; a {data['level']}'s "
                     f"parent is a {expected}")
            continue
        current = have.get(code)
        if current is None:
            if data["level"] == "prefecture" and any(
                    w["level"] == "prefecture" for w in have.values()):
                plan.bad(line, "level", "the suite has a prefecture depot already")
                continue
            creates.append((LEVEL_ORDER[data["level"]], line,
                            Write("POST", "/api/v1/warehouses",
                                  {k: v for k, v in data.items() if v is not None}, 1)))
            continue
        if current["level"] != data["level"]:
            plan.bad(line, "level", f"{code} is a {current['level']} in the suite; a level "
                     "cannot be changed")
            continue
        change = {k: data[k] for k in ("name", "name_zh", "status", "lon", "lat", "road_node",
                                          "parent")
                  if k in data and data[k] != current.get(k)}
        if change:
            patches.append(Write("PATCH", f"/api/v1/warehouses/{code}", change, 1))
        else:
            plan.unchanged += 1
    plan.writes.extend(w for _, _, w in sorted(creates, key=lambda c: c[:2]))
    plan.writes.extend(patches)


def _stock_rows(client: SuiteClient) -> dict[tuple[str, str], dict]:
    return {(row["warehouse"], row["item"]): row for row in client.pages("/api/v1/stock")}


def _known(client: SuiteClient) -> tuple[set[str], dict[str, dict]]:
    warehouses = {row["code"] for row in client.pages("/api/v1/warehouses")}
    items = {row["sku"]: row for row in client.pages("/api/v1/items")}
    return warehouses, items


def _check_refs(plan: ImportPlan, line: int, row: dict, warehouses: set[str],
                items: dict[str, dict]) -> bool:
    good = True
    if row["warehouse"] not in warehouses:
        plan.bad(line, "warehouse", f"no warehouse {row['warehouse']} in the suite")
        good = False
    if row["item"] not in items:
        plan.bad(line, "item", f"no item {row['item']} in the suite")
        good = False
    return good


def _plan_levels(client: SuiteClient, plan: ImportPlan, rows: Rows) -> None:
    from inventory_svc.schemas import LevelIn

    schema = LevelIn()
    warehouses, items = _known(client)
    current = _stock_rows(client)
    seen: dict[tuple[str, str], int] = {}
    by_warehouse: dict[str, list[tuple[int, dict]]] = {}
    for line, row in rows:
        level = {"item": row["item"], "min": row["min"], "target": row["target"]}
        if not _schema_problems(plan, line, schema, level):
            continue
        if not _check_refs(plan, line, row, warehouses, items):
            continue
        if row["target"] < row["min"]:
            plan.bad(line, "target", f"{row['target']} is below min {row['min']}")
            continue
        key = (row["warehouse"], row["item"])
        if key in seen:
            plan.bad(line, "item", f"{key[1]} at {key[0]} is also on line {seen[key]}")
            continue
        seen[key] = line
        now = current.get(key)
        if now and (now["min"], now["target"]) == (row["min"], row["target"]):
            plan.unchanged += 1
            continue
        by_warehouse.setdefault(row["warehouse"], []).append((line, level))
    for code, levels in by_warehouse.items():
        for start in range(0, len(levels), 1000):
            chunk = [level for _, level in levels[start:start + 1000]]
            plan.writes.append(Write("PUT", f"/api/v1/warehouses/{code}/levels",
                                     {"levels": chunk}, len(chunk)))


def _plan_stock(client: SuiteClient, plan: ImportPlan, rows: Rows) -> None:
    warehouses, items = _known(client)
    current = _stock_rows(client)
    groups: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    lots_seen: dict[tuple[str, str, str, str | None], int] = {}
    for line, row in rows:
        good = _check_refs(plan, line, row, warehouses, items)
        if row["quantity"] < 0:
            plan.bad(line, "quantity", "must not be negative")
            good = False
        item = items.get(row["item"])
        if item and item.get("perishable") and row["quantity"] > 0 and not row.get("expires_on"):
            plan.bad(line, "expires_on", f"{row['item']} is perishable: give its expiry date")
            good = False
        if item and not item.get("perishable") and row.get("expires_on"):
            plan.bad(line, "expires_on", f"{row['item']} is not perishable: leave it empty")
            good = False
        if len(row.get("lot", "")) > 64:
            plan.bad(line, "lot", "at most 64 characters")
            good = False
        if not good:
            continue
        lot_key = (row["warehouse"], row["item"], row.get("lot", ""), row.get("expires_on"))
        if lot_key in lots_seen:
            plan.bad(line, "lot", f"the same lot of {row['item']} at {row['warehouse']} is "
                     f"also on line {lots_seen[lot_key]}")
            continue
        lots_seen[lot_key] = line
        groups.setdefault((row["warehouse"], row["item"]), []).append((line, row))
    receipts: list[dict] = []
    counts: dict[str, list[dict]] = {}
    for (code, sku), lines in groups.items():
        total = sum(row["quantity"] for _, row in lines)
        now = current.get((code, sku), {"on_hand": 0})["on_hand"]
        if total == now:
            plan.unchanged += len(lines)
        elif now == 0:
            receipts.extend({"warehouse": code, "item": sku, "kind": "receipt",
                             "quantity": row["quantity"], "reason": "import",
                             "reference": "import",
                             **({"lot": row["lot"]} if row.get("lot") else {}),
                             **({"expires_on": row["expires_on"]}
                                if row.get("expires_on") else {})}
                            for _, row in lines if row["quantity"] > 0)
        else:
            latest = max((row for _, row in lines),
                         key=lambda r: (r.get("expires_on") or "", r["quantity"]))
            counts.setdefault(code, []).append(
                {"item": sku, "counted": total,
                 **({"lot": latest["lot"]} if latest.get("lot") else {}),
                 **({"expires_on": latest["expires_on"]} if latest.get("expires_on") else {})})
    for start in range(0, len(receipts), RECEIPT_BATCH):
        lines = receipts[start:start + RECEIPT_BATCH]
        digest = hashlib.sha256(json.dumps(lines, sort_keys=True).encode()).hexdigest()[:24]
        plan.writes.append(Write("POST", "/api/v1/movements/batch", {"lines": lines}, len(lines),
                                 {"Idempotency-Key": f"import:{digest}"}))
    for code, entries in counts.items():
        plan.writes.append(Write("POST", "/api/v1/stocktakes",
                                 {"warehouse": code, "counts": entries, "reason": "import",
                                  "reference": "import"}, len(entries)))


def _plan_roads(plan: ImportPlan, stream: TextIO) -> None:
    """Every bad feature, by index: the importer's own check is run again without each bad
    feature it finds (edges on a bad node are then reported too)."""
    from allocation_svc.geojson import InvalidRoads, roads_from_geojson

    try:
        doc = json.load(stream)
    except (ValueError, RecursionError) as exc:
        plan.bad(None, "", f"not JSON: {exc}")
        return
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list):
        try:
            roads_from_geojson(doc)
        except InvalidRoads as exc:
            plan.bad(None, exc.field, str(exc).split(": ", 2)[-1])
        return
    plan.rows = len(features)
    keep = list(range(len(features)))
    while len(plan.problems) < 10_000:
        try:
            roads_from_geojson({**doc, "features": [features[i] for i in keep]})
            break
        except InvalidRoads as exc:
            if exc.index is None:
                plan.bad(None, exc.field, str(exc).split(": ", 2)[-1])
                return
            original = keep.pop(exc.index)
            plan.bad(original, exc.field, str(exc).split(": ", 2)[-1], "feature")
    good = {"type": "FeatureCollection", "features": [features[i] for i in keep]}
    plan.writes.append(Write("PUT", "/api/v1/roads", good, len(keep)))


def without_bad_rows(client: SuiteClient, plan: ImportPlan, text: str) -> ImportPlan:
    """The plan of the same file less its bad rows (for --skip-bad). It is checked again, since
    a row may be good only with another that was bad (a village under a bad township); the
    problems found on the way are all kept."""
    if plan.kind == "roads":
        return plan  # its road document was already built without the bad features
    skip, problems = set(plan.bad_lines), list(plan.problems)
    while True:
        again = plan_import(client, plan.kind, io.StringIO(text, newline=""), frozenset(skip))
        if not again.bad_lines:
            again.problems, again.bad_lines, again.rows = problems, skip, plan.rows
            return again
        problems.extend(again.problems)
        skip |= again.bad_lines


def apply(client: SuiteClient, plan: ImportPlan, progress: Progress) -> int:
    """Send the plan's writes in order; the number of rows written."""
    written = 0
    with progress(plan.kind, sum(w.rows for w in plan.writes)) as bar:
        for write in plan.writes:
            answer = client.request(write.method, write.path, write.body, write.headers or None)
            if answer.status not in (200, 201):
                raise ApiError(write.method, write.path, answer.status, answer.body)
            written += write.rows
            bar.update(write.rows)
    return written


# --- export ----------------------------------------------------------------------------------

def export(client: SuiteClient, kind: str, out: TextIO, progress: Progress) -> int:
    """Write the suite's records of `kind` to `out`; the number of rows (features)."""
    if kind == "roads":
        doc = client.call("GET", "/api/v1/roads")
        doc.pop("graph_version", None)
        json.dump(doc, out, ensure_ascii=False, separators=(",", ":"))
        out.write("\n")
        return len(doc.get("features", []))
    names = [c.name for c in COLUMNS[kind]]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    rows = {"warehouses": _warehouse_rows, "items": _item_rows, "levels": _level_rows,
            "stock": _stock_export_rows}[kind](client)
    count = 0
    with progress(kind, 0) as bar:
        for row in rows:
            writer.writerow(["" if row.get(n) is None else _cell(row[n]) for n in names])
            count += 1
            bar.update(1)
    return count


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return _type_norms_cell(value)
    return str(value)


def _warehouse_rows(client: SuiteClient) -> Iterator[dict]:
    rows = client.pages("/api/v1/warehouses")
    rows.sort(key=lambda w: (LEVEL_ORDER.get(w["level"], 9), w["code"]))
    yield from rows


def _item_rows(client: SuiteClient) -> Iterator[dict]:
    yield from client.pages("/api/v1/items")


def _level_rows(client: SuiteClient) -> Iterator[dict]:
    for row in client.pages("/api/v1/stock"):
        if row["min"] or row["target"]:
            yield row


def _stock_export_rows(client: SuiteClient) -> Iterator[dict]:
    """One row per lot with stock: the lots' balances are the sums of the ledger's lines (the
    contract's guarantee), checked against each balance; where they do not add up, one row
    with the balance and no lot."""
    balances = {(r["warehouse"], r["item"]): r["on_hand"] for r in client.pages("/api/v1/stock")}
    lots: dict[tuple[str, str], dict[tuple[str, str | None], int]] = {}
    for page in client.iter_pages("/api/v1/movements"):
        for line in page:
            key = (line["warehouse"], line["item"])
            per_lot = lots.setdefault(key, {})
            lot = (line.get("lot") or "", line.get("expires_on"))
            per_lot[lot] = per_lot.get(lot, 0) + line["quantity"]
    for (code, sku), on_hand in sorted(balances.items()):
        if on_hand <= 0:
            continue
        per_lot = {k: q for k, q in lots.get((code, sku), {}).items() if q > 0}
        if sum(per_lot.values()) != on_hand:
            yield {"warehouse": code, "item": sku, "quantity": on_hand}
            continue
        for (lot, expires_on), quantity in sorted(per_lot.items(),
                                                  key=lambda kv: (kv[0][1] or "", kv[0][0])):
            yield {"warehouse": code, "item": sku, "quantity": quantity, "lot": lot or None,
                   "expires_on": expires_on}
