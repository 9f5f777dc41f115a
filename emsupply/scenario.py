"""`emsupply scenario storm`: the storyline of a real response, told through the suite's public
API with a commander's token, each step printed as a readable table.

A heavy rainstorm hits three neighbouring townships of one county. The first report (within two
minutes) carries only the type and one site; the full report follows: level IV, 9,690 people to
resettle for 3 days. The commander asks for a plan from the items' population norms, graded
(township first, then county, then prefecture). A landslide then closes a road that the plan
uses; the plan is re-planned, dispatched, and its shipments arrive. Last, the depots that fell
below their `min` are restocked from the level above, county by county.

Every step is checked: a failed call, or a plan that still routes over the closed road, stops
the story with the step that failed (`StepFailed`), which the CLI turns into a non-zero exit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from emsupply.suite import ApiError, SuiteClient

POPULATION = (4260, 3180, 2250)  # 9,690 people to resettle, as in 2021-2022 (DOMAIN.md)
DAYS = 3
PREFERRED_COUNTY = "RJ"  # Rongjiang, on the Duliu river, floods often
LEVEL_RANK = {"prefecture": 0, "county": 1, "township": 2, "village": 3}


class StepFailed(RuntimeError):
    def __init__(self, step: str, detail: str):
        super().__init__(f"step '{step}' failed: {detail}")
        self.step, self.detail = step, detail


@dataclass
class Outcome:
    """What the story did, for whoever checks it afterwards."""

    incident: int | None = None
    plan: int | None = None
    county: str | None = None
    townships: list[str] = field(default_factory=list)
    closed_edge: str | None = None
    replenishments: list[int] = field(default_factory=list)
    transfers: list[int] = field(default_factory=list)
    shipped: int = 0
    unmet: int = 0
    seconds: float = 0.0


def table(headers: list[str], rows: list[list[Any]], limit: int | None = None) -> str:
    """A plain text table; numbers right-aligned. Over `limit` rows, the rest is counted."""
    shown = rows if limit is None or len(rows) <= limit else rows[:limit]
    cells = [[_fmt(v) for v in row] for row in shown]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in shown) and bool(shown)
               for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w)
                         for v, w, n in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells]
    if len(shown) < len(rows):
        out.append(f"... and {len(rows) - len(shown)} more")
    return "\n".join("  " + row for row in out)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class Roads:
    """The road network as the API gives it (GET /roads), to name the roads of a path."""

    def __init__(self, doc: dict):
        self.edges: dict[str, dict] = {}
        self.by_pair: dict[frozenset, list[str]] = {}
        self.adjacent: dict[str, set[str]] = {}
        for feature in doc["features"]:
            props = feature["properties"]
            if feature["geometry"]["type"] != "LineString":
                continue
            self.edges[props["id"]] = props
            pair = frozenset((props["from"], props["to"]))
            self.by_pair.setdefault(pair, []).append(props["id"])
            if props.get("status", "open") != "closed":
                self.adjacent.setdefault(props["from"], set()).add(props["to"])
                self.adjacent.setdefault(props["to"], set()).add(props["from"])

    def edge_of(self, a: str, b: str) -> str | None:
        found = self.by_pair.get(frozenset((a, b)))
        return found[0] if found and len(found) == 1 else None

    def describe(self, path: list[str], parts: int = 3) -> str:
        """`national 42 km > provincial 18 km > village 3 km` for a path of nodes."""
        runs: list[list] = []
        for a, b in zip(path, path[1:], strict=False):
            ids = self.by_pair.get(frozenset((a, b))) or []
            if not ids:
                continue
            edge = self.edges[ids[0]]
            if runs and runs[-1][0] == edge["road_class"]:
                runs[-1][1] += edge["length_km"]
            else:
                runs.append([edge["road_class"], edge["length_km"]])
        text = [f"{cls} {km:.0f} km" for cls, km in runs]
        if len(text) > parts:
            text = text[:parts - 1] + ["…", text[-1]]
        return " > ".join(text) or "(on site)"

    def joined_without(self, edge_id: str) -> bool:
        """Whether the two ends of `edge_id` are still joined (undirected) once it is closed."""
        edge = self.edges[edge_id]
        start, goal = edge["from"], edge["to"]
        seen, frontier = {start}, [start]
        while frontier:
            node = frontier.pop()
            for other in self.adjacent.get(node, ()):
                if {node, other} == {start, goal}:
                    continue
                if other == goal:
                    return True
                if other not in seen:
                    seen.add(other)
                    frontier.append(other)
        return False


def uses(path: list[str], edge: dict) -> bool:
    pair = {edge["from"], edge["to"]}
    return any({a, b} == pair for a, b in zip(path, path[1:], strict=False))


class Storm:
    def __init__(self, client: SuiteClient, echo: Callable[[str], None] = print,
                 county: str | None = None):
        self.client, self.echo, self.county = client, echo, county
        self.outcome = Outcome()
        self.step_no = 0
        self.roads: Roads | None = None
        self.names: dict[str, str] = {}
        self.levels: dict[str, str] = {}
        self.paths: dict[str, list[str]] = {}
        self.started = datetime.now(UTC)

    # --- the story -----------------------------------------------------------------------
    def run(self) -> Outcome:
        started = time.monotonic()
        steps = [self.first_report, self.full_report, self.plan, self.landslide, self.replan,
                 self.dispatch, self.deliveries, self.restock, self.check]
        self.echo(f"Storm scenario: {len(steps)} steps through the public API\n")
        state: dict[str, Any] = {}
        for step in steps:
            self.step_no += 1
            title = (step.__doc__ or step.__name__).strip().splitlines()[0]
            self.echo(f"[{self.step_no}/{len(steps)}] {title}")
            try:
                step(state)
            except ApiError as exc:
                raise StepFailed(title, str(exc)) from None
            except StepFailed as exc:  # named by the step's title, however it was raised
                raise StepFailed(title, exc.detail) from None
            self.echo("")
        self.outcome.seconds = time.monotonic() - started
        return self.outcome

    def first_report(self, state: dict) -> None:
        """First report, within two minutes: a rainstorm, one site"""
        county, townships = self._place()
        self.outcome.county, self.outcome.townships = county, townships
        incident = self.client.call("POST", "/api/v1/incidents", {
            "type": "rainstorm", "sites": [{"id": townships[0], "warehouse": townships[0]}]})
        state["incident"] = self.outcome.incident = incident["id"]
        site = incident["sites"][0]
        self.echo(table(["incident", "type", "level", "site", "township", "county"],
                        [[incident["id"], incident["type"], incident["level"], site["id"],
                          site["township"], site["county"]]]))

    def full_report(self, state: dict) -> None:
        """Full report: level IV, 9,690 people to resettle for 3 days in three townships"""
        townships = self.outcome.townships
        sites = [{"id": code, "warehouse": code, "population": people}
                 for code, people in zip(townships, POPULATION, strict=True)]
        county_name = self.names.get(self.outcome.county, self.outcome.county)
        county_name = county_name.split(" emergency supply")[0]
        incident = self.client.call("PATCH", f"/api/v1/incidents/{state['incident']}", {
            "level": "IV", "title": f"Heavy rainstorm: {county_name}, three townships",
            "sites": sites})
        self.echo(f"  {incident['title']} (level {incident['level']})")
        self.echo(table(["site", "township depot", "road node", "people"],
                        [[s["id"], self.names.get(s["warehouse"], s["warehouse"]), s["node"],
                          s["population"]] for s in incident["sites"]]))
        self.echo(f"  {sum(POPULATION):,} people, {DAYS} days")

    def plan(self, state: dict) -> None:
        """Plan from population norms (graded: township, then county, then prefecture)"""
        plan = self.client.call(
            "POST", f"/api/v1/incidents/{state['incident']}/allocations",
            {"population_days": DAYS, "policy": "graded"},
            {"Idempotency-Key": f"storm:{state['incident']}:plan"})
        state["plan"] = self.outcome.plan = plan["id"]
        self.roads = Roads(self.client.call("GET", "/api/v1/roads"))
        warehouses = self.client.pages("/api/v1/warehouses")
        self.levels = {w["code"]: w["level"] for w in warehouses}
        self.paths = {w["code"]: w["path"] for w in warehouses}
        live = [s for s in plan["shipments"] if s["status"] != "stranded"]
        self.echo(f"  plan {plan['id']}: {plan['status']}, {len(live):,} shipments from "
                  f"{len({s['from'] for s in live}):,} depots, graph version "
                  f"{plan['graph_version']}, cost {plan['cost']:,.0f} unit-minutes")
        self._demand_table(plan)
        self._by_level(live)
        self._shipments(live, "the largest shipments (who sends what, by which road, how long)")
        self._unmet(plan["unmet"])

    def landslide(self, state: dict) -> None:
        """A landslide closes a road the plan uses"""
        plan = self.client.call("GET", f"/api/v1/allocations/{state['plan']}")
        edge_id, load = self._road_to_close(plan)
        if edge_id is None:
            raise StepFailed("landslide", "the plan uses no road that can close without "
                                          "cutting a site off (nothing to re-plan)")
        edge = self.roads.edges[edge_id]
        answer = self.client.call("POST", "/api/v1/roads/events", {"events": [{
            "edge": edge_id, "status": "closed", "reason": "landslide"}]})
        self.outcome.closed_edge = edge_id
        self.echo(table(["road", "class", "between", "km", "shipments on it", "units",
                         "graph version"],
                        [[edge_id, edge["road_class"], f"{edge['from']} - {edge['to']}",
                          edge["length_km"], load[0], load[1], answer["graph_version"]]]))

    def replan(self, state: dict) -> None:
        """Re-plan: shipments over the closed road rerouted, or re-sourced"""
        before = {s["id"]: s for s in self.client.call(
            "GET", f"/api/v1/allocations/{state['plan']}")["shipments"]}
        plan = self.client.call("POST", f"/api/v1/allocations/{state['plan']}/replan")
        edge = self.roads.edges[self.outcome.closed_edge]
        changes: dict[str, list[dict]] = {"rerouted": [], "re-sourced": [], "stranded": []}
        for shipment in plan["shipments"]:
            old = before.get(shipment["id"])
            if shipment["status"] == "stranded":
                changes["stranded"].append(shipment)
            elif old is None:
                changes["re-sourced"].append(shipment)
            elif old["path"] != shipment["path"]:
                shipment["was"] = old["minutes"]
                changes["rerouted"].append(shipment)
        self.echo(table(["change", "shipments", "units"],
                        [[kind, len(rows), sum(r["quantity"] for r in rows)]
                         for kind, rows in changes.items()]))
        moved = sorted(changes["rerouted"] + changes["re-sourced"],
                       key=lambda r: (-r["quantity"], r["id"]))
        if moved:
            self.echo("  the largest of them:")
            self.echo(table(["from", "to", "item", "qty", "now by road", "minutes"],
                            [[r["from"], r["to"], r["item"], r["quantity"],
                              self.roads.describe(r["path"]),
                              f"{r['was']:.0f} -> {r['minutes']:.0f}" if "was" in r
                              else f"{r['minutes']:.0f} (new source)"] for r in moved], 10))
        still = [s["id"] for s in plan["shipments"]
                 if s["status"] != "stranded" and uses(s["path"], edge)]
        if still:
            raise StepFailed("re-plan", f"shipments {still} still use closed road "
                                        f"{self.outcome.closed_edge}")
        self._unmet(plan["unmet"])

    def dispatch(self, state: dict) -> None:
        """Dispatch: the held stock leaves the depots"""
        plan = self.client.call("POST", f"/api/v1/allocations/{state['plan']}/dispatch")
        state["dispatched_at"] = datetime.now(UTC)
        live = [s for s in plan["shipments"] if s["status"] != "stranded"]
        depots = {s["from"] for s in live}
        self.outcome.shipped = sum(s["quantity"] for s in live)
        self.echo(f"  plan {plan['id']} {plan['status']} at "
                  f"{state['dispatched_at']:%H:%M} UTC: {len(live):,} shipments, "
                  f"{self.outcome.shipped:,} units from {len(depots):,} depots")
        start = state["dispatched_at"]
        per_site: dict[str, list] = {}
        for shipment in live:
            entry = per_site.setdefault(shipment["to"], [0, 0, math.inf, 0.0])
            entry[0] += 1
            entry[1] += shipment["quantity"]
            entry[2] = min(entry[2], shipment["minutes"])
            entry[3] = max(entry[3], shipment["minutes"])
        self.echo(table(["site", "shipments", "units", "first arrives", "last arrives"],
                        [[site, n, units, f"{start + timedelta(minutes=first):%H:%M} UTC",
                          f"{start + timedelta(minutes=last):%H:%M} UTC"]
                         for site, (n, units, first, last) in sorted(per_site.items())]))

    def deliveries(self, state: dict) -> None:
        """Deliveries: every shipment arrives"""
        plan = self.client.call("GET", f"/api/v1/allocations/{state['plan']}")
        start = state["dispatched_at"]
        arriving = [s for s in plan["shipments"] if s["status"] not in ("stranded", "delivered")]
        deliveries = [{"shipment": s["id"], "quantity": s["quantity"] - s["delivered"],
                       "at": _iso(start + timedelta(minutes=s["minutes"]))}
                      for s in arriving]
        if deliveries:
            plan = self.client.call(
                "POST", f"/api/v1/allocations/{state['plan']}/deliveries",
                {"deliveries": deliveries},
                {"Idempotency-Key": f"storm:{state['plan']}:deliveries"})
        by_site: dict[str, list] = {}
        for shipment in plan["shipments"]:
            if shipment["status"] == "delivered":
                entry = by_site.setdefault(shipment["to"], [0, 0, ""])
                entry[0] += 1
                entry[1] += shipment["delivered"]
                entry[2] = max(entry[2], shipment["delivered_at"] or "")
        self.echo(f"  plan {plan['id']}: {plan['status']}")
        self.echo(table(["site", "shipments", "units", "last arrival (UTC)"],
                        [[site, n, units, last[11:16]] for site, (n, units, last)
                         in sorted(by_site.items())]))

    def restock(self, state: dict) -> None:
        """Restock: depots that fell below min, from the level above"""
        plan = self.client.call("GET", f"/api/v1/allocations/{state['plan']}")
        sources = {(s["from"], s["item"]) for s in plan["shipments"]
                   if s["status"] != "stranded"}
        fallen = {f"{row['warehouse']}/{row['item']}": row
                  for row in self.client.pages("/api/v1/stock?below_min=true")
                  if (row["warehouse"], row["item"]) in sources}
        if not fallen:
            self.echo("  no depot fell below its min")
            return
        paths = self.paths
        by_level: dict[str, list[int]] = {}
        for row in fallen.values():
            entry = by_level.setdefault(self.levels.get(row["warehouse"], "?"), [0, 0])
            entry[0] += 1
            entry[1] += row["target"] - row["on_hand"]
        self.echo(f"  {len(fallen):,} balances fell below their min:")
        self.echo(table(["level", "balances", "units to target"],
                        [[level, n, units] for level, (n, units) in
                         sorted(by_level.items(), key=lambda kv: LEVEL_RANK.get(kv[0], 9))]))
        by_county: dict[str | None, set[str]] = {}
        for row in fallen.values():
            path = paths[row["warehouse"]]
            by_county.setdefault(path[1] if len(path) > 1 else None, set()).add(row["item"])
        lines, short = [], []
        for county, items in sorted(by_county.items(), key=lambda kv: kv[0] or ""):
            if county is None:
                short.extend({"warehouse": r["warehouse"], "item": r["item"],
                              "quantity": r["target"] - r["on_hand"],
                              "reason": "the prefecture depot has no level above"}
                             for r in fallen.values() if len(paths[r["warehouse"]]) == 1)
                continue
            proposal = self.client.call("POST", "/api/v1/replenishments",
                                        {"within": county, "items": sorted(items)})
            done = self.client.call("POST",
                                    f"/api/v1/replenishments/{proposal['id']}/execute")
            self.outcome.replenishments.append(done["id"])
            self.outcome.transfers.extend(t["id"] for t in done["transfers"])
            lines.extend(proposal["lines"])
            short.extend(proposal["short"])
        restores = {f"{line['destination']}/{line['item']}" for line in lines}
        self.echo(f"  {len(lines)} transfer lines in {len(self.outcome.transfers)} transfers "
                  f"(in transit until each keeper receives them); "
                  f"{len(restores & set(fallen))} of the {len(fallen)} fallen balances covered")
        ordered = sorted(lines, key=lambda line: (f"{line['destination']}/{line['item']}"
                                                  not in fallen, line["destination"]))
        self.echo(table(["from", "to", "item", "qty", "by road", "arrives"],
                        [[line["source"], line["destination"], line["item"], line["quantity"],
                          self.roads.describe(line["path"]), f"+{_duration(line['minutes'])}"]
                         for line in ordered], 15))
        if short:
            reasons: dict[str, list[int]] = {}
            for entry in short:
                reason = entry["reason"]
                if "no more to spare" in reason:
                    reason = "the depot above has no more to spare above its own min"
                counted = reasons.setdefault(reason, [0, 0])
                counted[0] += 1
                counted[1] += entry["quantity"]
            self.echo("  not restocked (the response used what the level above could spare):")
            self.echo(table(["why", "balances", "units"],
                            [[why, n, units] for why, (n, units) in sorted(reasons.items())]))
        edge = self.roads.edges[self.outcome.closed_edge]
        if any(uses(line["path"], edge) for line in lines):
            raise StepFailed("restock", "a transfer is routed over the closed road")

    def check(self, state: dict) -> None:
        """Check: stock that left the depots equals the plan's shipments"""
        plan = self.client.call("GET", f"/api/v1/allocations/{state['plan']}")
        planned: dict[tuple[str, str], int] = {}
        for shipment in plan["shipments"]:
            if shipment["status"] != "stranded":
                key = (shipment["from"], shipment["item"])
                planned[key] = planned.get(key, 0) + shipment["quantity"]
        issued: dict[tuple[str, str], int] = {}
        since = _iso(self.started - timedelta(hours=1))  # room for a clock apart
        for line in self.client.pages(f"/api/v1/movements?since={since}"):
            if line["kind"] == "issue" and line["reference"] == f"plan:{plan['id']}":
                key = (line["warehouse"], line["item"])
                issued[key] = issued.get(key, 0) - line["quantity"]
        if issued != planned:
            wrong = sorted(set(issued.items()) ^ set(planned.items()))[:5]
            raise StepFailed("check", f"stock issued differs from the plan: {wrong}")
        self.outcome.unmet = sum(u["quantity"] for u in plan["unmet"])
        demand = sum(d["quantity"] for d in plan["demands"])
        self.echo(table(["demanded", "shipped and issued", "delivered", "unmet",
                         "closed road on a route"],
                        [[demand, sum(planned.values()),
                          sum(s["delivered"] for s in plan["shipments"]), self.outcome.unmet,
                          "no"]]))

    # --- helpers -------------------------------------------------------------------------
    def _place(self) -> tuple[str, list[str]]:
        """The county (an active depot with at least three townships) and its three
        townships nearest to each other, around the one nearest the county seat."""
        counties = self.client.pages("/api/v1/warehouses?level=county&status=active")
        self.names.update({c["code"]: c["name"] for c in counties})
        order = sorted(counties, key=lambda c: (c["code"] != (self.county or PREFERRED_COUNTY),
                                                c["code"]))
        if self.county and (not order or order[0]["code"] != self.county):
            raise StepFailed("first report", f"no active county depot {self.county}")
        for county in order:
            townships = [t for t in self.client.pages(
                f"/api/v1/warehouses?level=township&parent={county['code']}&status=active")
                if t.get("road_node") and t.get("lon") is not None]
            if len(townships) < 3:
                continue
            self.names.update({t["code"]: t["name"] for t in townships})

            def far(a: dict, b: dict) -> float:
                return (a["lon"] - b["lon"]) ** 2 + (a["lat"] - b["lat"]) ** 2

            first = min(townships, key=lambda t: (far(t, county), t["code"]))
            rest = sorted((t for t in townships if t is not first),
                          key=lambda t: (far(t, first), t["code"]))[:2]
            return county["code"], [first["code"]] + [t["code"] for t in rest]
        raise StepFailed("first report", "no active county depot with three townships: "
                                         "seed the suite first (emsupply seed qiandongnan)")

    def _road_to_close(self, plan: dict) -> tuple[str | None, tuple[int, int]]:
        """The road carrying the most units of the plan whose closing cuts no one off (its
        ends stay joined by other roads), named by a single edge between its two nodes."""
        load: dict[str, list[int]] = {}
        for shipment in plan["shipments"]:
            path = shipment["path"]
            for a, b in zip(path, path[1:], strict=False):
                edge = self.roads.edge_of(a, b)
                if edge:
                    entry = load.setdefault(edge, [0, 0])
                    entry[0] += 1
                    entry[1] += shipment["quantity"]
        for edge, (count, units) in sorted(load.items(), key=lambda kv: (-kv[1][1], kv[0])):
            if self.roads.joined_without(edge):
                return edge, (count, units)
        return None, (0, 0)

    def _demand_table(self, plan: dict) -> None:
        totals: dict[str, int] = {}
        for demand in plan["demands"]:
            totals[demand["item"]] = totals.get(demand["item"], 0) + demand["quantity"]
        shipped: dict[str, int] = {}
        for shipment in plan["shipments"]:
            shipped[shipment["item"]] = shipped.get(shipment["item"], 0) + shipment["quantity"]
        self.echo(table(["item", "needed", "planned", "unmet"],
                        [[item, need, shipped.get(item, 0), need - shipped.get(item, 0)]
                         for item, need in sorted(totals.items())]))

    def _by_level(self, live: list[dict]) -> None:
        """Where the stock comes from, level by level (graded: own township first)."""
        rows: dict[str, list] = {}
        for shipment in live:
            entry = rows.setdefault(self.levels.get(shipment["from"], "?"), [set(), 0, 0])
            entry[0].add(shipment["from"])
            entry[1] += 1
            entry[2] += shipment["quantity"]
        self.echo(table(["sent from", "depots", "shipments", "units"],
                        [[level, len(depots), n, units] for level, (depots, n, units) in
                         sorted(rows.items(), key=lambda kv: LEVEL_RANK.get(kv[0], 9))]))

    def _shipments(self, live: list[dict], title: str) -> None:
        rows = [[s["from"], s["to"], s["item"], s["quantity"], self.roads.describe(s["path"]),
                 s["distance_km"], f"+{_duration(s['minutes'])}"]
                for s in sorted(live, key=lambda s: (-s["quantity"], s["minutes"], s["id"]))]
        self.echo(f"  {title}:")
        self.echo(table(["from", "to", "item", "qty", "by road", "km", "arrives"], rows, 15))

    def _unmet(self, unmet: list[dict]) -> None:
        if not unmet:
            self.echo("  unmet: nothing")
            return
        self.echo("  unmet:")
        self.echo(table(["site", "item", "qty", "why"],
                        [[u["site"], u["item"], u["quantity"],
                          u.get("detail") or u["reason"]] for u in unmet], 20))


def _duration(minutes: float) -> str:
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest:02d} min" if hours else f"{rest} min"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
