"""`emsupply scenario storm`: the storyline of a real response, told through the suite's public
API with a commander's token, each step printed as a readable table.

A heavy rainstorm is forecast for three neighbouring townships of one county: the weather warning
(the source document's "four earlies": early warning, consultation, response, evacuation) expects
3,000 people to leave home, and the commander moves stock from the backbone to the townships'
centres beforehand, where their keepers receive it. The rain comes. The first report (within two
minutes) carries only the type and one site; the full report follows: level IV, 9,690 people to
resettle for 3 days. The commander asks for a plan from the items' population norms, by the
default policy, the backbone (州级为支撑、县级为基础、乡村为补充: the townships' own depots first,
then their county depot, then the prefecture and other county depots), driven in trips of
lorries, vans and pickups. A landslide then closes a road that the plan uses; the plan is
re-planned, dispatched, and its shipments arrive. Last, the depots that fell below their `min`
are restocked from the level above, county by county.

Everything a person reads is said in the chosen language (`--lang zh|en`): the tables here
through the gettext catalogue (`shared.i18n`), the API's reasons through Accept-Language.

Every step is checked: a failed call, or a plan that still routes over the closed road, stops
the story with the step that failed (`StepFailed`), which the CLI turns into a non-zero exit.
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from emsupply.suite import ApiError, SuiteClient
from shared.i18n import _, localize

POPULATION = (4260, 3180, 2250)  # 9,690 people to resettle, as in 2021-2022 (DOMAIN.md)
DAYS = 3
WARNED = 3000  # whom the warning expects to leave home: fewer than the storm then drives out
PREFERRED_COUNTY = "RJ"  # Rongjiang, on the Duliu river, floods often
LEVEL_RANK = {"prefecture": 0, "county": 1, "township": 2, "village": 3}
WORDS = {"prefecture": _("prefecture"), "county": _("county"), "township": _("township"),
         "village": _("village"), "lorry": _("lorry"), "van": _("van"), "pickup": _("pickup"),
         "rerouted": _("rerouted"), "re-sourced": _("re-sourced"), "stranded": _("stranded"),
         "planned": _("planned"), "dispatched": _("dispatched"), "delivered": _("delivered"),
         "rainstorm": _("rainstorm")}
ROADS = {"expressway": _("expressway"), "national": _("national road"),
         "provincial": _("provincial road"), "county": _("county road"),
         "township": _("township road"), "village": _("village road")}


class StepFailed(RuntimeError):
    def __init__(self, step: str, detail: str):
        self.said = _("step '%(step)s' failed: %(detail)s", step=step, detail=detail)
        super().__init__(str(self.said))
        self.step, self.detail = step, detail


@dataclass
class Outcome:
    """What the story did, for whoever checks it afterwards."""

    incident: int | None = None
    plan: int | None = None
    county: str | None = None
    townships: list[str] = field(default_factory=list)
    closed_edge: str | None = None
    warning: int | None = None
    prepositioned: list[int] = field(default_factory=list)  # transfers, received or on the way
    received: int = 0
    replenishments: list[int] = field(default_factory=list)
    transfers: list[int] = field(default_factory=list)
    shipped: int = 0
    unmet: int = 0
    seconds: float = 0.0


def table(headers: list[str], rows: list[list[Any]], limit: int | None = None,
          language: str = "en") -> str:
    """A plain text table in `language`; numbers right-aligned, Chinese counted two columns
    wide as a terminal shows it. Over `limit` rows, the rest is counted."""
    shown = rows if limit is None or len(rows) <= limit else rows[:limit]
    cells = [[localize(_fmt(v), language) for v in row] for row in shown]
    heads = [localize(h, language) for h in headers]
    widths = [max([_width(h)] + [_width(r[i]) for r in cells]) for i, h in enumerate(heads)]
    numeric = [all(isinstance(row[i], int | float) for row in shown) and bool(shown)
               for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(" " * (w - _width(v)) + v if n else v + " " * (w - _width(v))
                         for v, w, n in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(heads), line(["-" * w for w in widths])] + [line(r) for r in cells]
    if len(shown) < len(rows):
        out.append(localize(_("... and %(count)s more", count=len(rows) - len(shown)),
                            language))
    return "\n".join("  " + row for row in out)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return value if isinstance(value, str) else str(value)


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

    def describe(self, path: list[str], parts: int = 3, language: str = "en") -> str:
        """`national road 42 km > provincial road 18 km > village road 3 km` for a path."""
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
        text = [localize(_("%(road)s %(km).0f km", road=ROADS.get(cls, cls), km=km), language)
                for cls, km in runs]
        if len(text) > parts:
            text = text[:parts - 1] + ["…", text[-1]]
        return " > ".join(text) or localize(_("(on site)"), language)

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
    """`keepers`, when given, makes a client for the keepers of some depots (to receive the
    pre-positioned stock at the townships' centres); without it that stock stays in transit."""

    def __init__(self, client: SuiteClient, echo: Callable[[str], None] = print,
                 county: str | None = None, language: str = "en",
                 keepers: Callable[[list[str]], SuiteClient] | None = None):
        self.client, self.county, self.language = client, county, language
        self.keepers = keepers
        self.echo = lambda text: echo(localize(text, language))
        self.outcome = Outcome()
        self.step_no = 0
        self.roads: Roads | None = None
        self.names: dict[str, str] = {}
        self.levels: dict[str, str] = {}
        self.paths: dict[str, list[str]] = {}
        self.items: dict[str, str] = {}  # sku -> name in the story's language
        self.started = datetime.now(UTC)

    # --- the story -----------------------------------------------------------------------
    def run(self) -> Outcome:
        started = time.monotonic()
        steps = [
            (self.warning, _("Early warning: a rainstorm is forecast for three townships; stock "
                             "moves towards them beforehand")),
            (self.first_report, _("First report, within two minutes: a rainstorm, one site")),
            (self.full_report, _("Full report: level IV, 9,690 people to resettle for 3 days in "
                                 "three townships")),
            (self.plan, _("Plan from population norms (the backbone: townships on the spot, "
                          "their county depot, then the prefecture)")),
            (self.landslide, _("A landslide closes a road the plan uses; the incident "
                               "escalates")),
            (self.replan, _("Re-plan: shipments over the closed road rerouted, or re-sourced")),
            (self.dispatch, _("Dispatch: the held stock leaves the depots")),
            (self.deliveries, _("Deliveries: every shipment arrives")),
            (self.restock, _("Restock: depots that fell below min, from the level above")),
            (self.check, _("Check: stock that left the depots equals the plan's shipments")),
        ]
        self.echo(_("Storm scenario: %(steps)s steps through the public API\n",
                    steps=len(steps)))
        state: dict[str, Any] = {}
        for step, said in steps:
            self.step_no += 1
            title = localize(said, self.language)
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

    def warning(self, state: dict) -> None:
        county, townships = self._place()
        self.outcome.county, self.outcome.townships = county, townships
        self._learn()
        now = datetime.now(UTC)
        warning = self.client.call("POST", "/api/v1/warnings", {
            "type": "rainstorm", "area": townships, "starts_at": _iso(now + timedelta(hours=6)),
            "ends_at": _iso(now + timedelta(days=DAYS)), "people": WARNED, "days": DAYS})
        self.outcome.warning = warning["id"]
        self.echo(_("  warning %(warning)s: %(people)s people may have to leave home for "
                    "%(days)s days, from %(start)s UTC", warning=warning["id"],
                    people=f"{WARNED:,}", days=DAYS, start=warning["starts_at"][11:16]))
        proposal = self.client.call("POST", f"/api/v1/warnings/{warning['id']}/prepositioning")
        done = self.client.call("POST", f"/api/v1/replenishments/{proposal['id']}/execute")
        self.outcome.prepositioned = [t["id"] for t in done["transfers"]]
        by_route: dict[tuple[str, str], list] = {}
        for line in proposal["lines"]:
            entry = by_route.setdefault((line["source"], line["destination"]),
                                        [0, 0, line["path"], line["minutes"]])
            entry[0] += 1
            entry[1] += line["quantity"]
        self.echo(self.table([_("from"), _("to"), _("items"), _("units"), _("by road"),
                              _("arrives")],
                             [[self._short(a), self._short(b), n, f"{units:,}", self._road(path),
                               self._duration(minutes)]
                              for (a, b), (n, units, path, minutes) in sorted(by_route.items())]))
        if proposal["short"]:
            self.echo(_("  %(count)s lines the backbone cannot spare above its min now",
                        count=len(proposal["short"])))
        if self.keepers is None:
            self.echo(_("  %(transfers)s transfers in transit until the townships' keepers "
                        "receive them", transfers=len(self.outcome.prepositioned)))
            return
        keepers = self.keepers(townships)
        for transfer in self.outcome.prepositioned:
            keepers.call("POST", f"/api/v1/transfers/{transfer}/receive", {},
                         {"Idempotency-Key": f"storm:{warning['id']}:receive:{transfer}"})
            self.outcome.received += 1
        self.echo(_("  %(transfers)s transfers received by the townships' keepers before the "
                    "rain", transfers=self.outcome.received))

    def first_report(self, state: dict) -> None:
        townships = self.outcome.townships
        incident = self.client.call("POST", "/api/v1/incidents", {
            "type": "rainstorm", "sites": [{"id": townships[0], "warehouse": townships[0]}]})
        state["incident"] = self.outcome.incident = incident["id"]
        site = incident["sites"][0]
        self.echo(self.table([_("incident"), _("type"), _("level"), _("site"), _("township"),
                              _("county")],
                             [[incident["id"], WORDS.get(incident["type"], incident["type"]),
                               incident["level"], site["id"],
                               self.names.get(site["township"], site["township"]),
                               self.names.get(site["county"], site["county"])]]))

    def full_report(self, state: dict) -> None:
        townships = self.outcome.townships
        sites = [{"id": code, "warehouse": code, "population": people}
                 for code, people in zip(townships, POPULATION, strict=True)]
        county_name = self.names.get(self.outcome.county, self.outcome.county)
        county_name = county_name.split(" emergency supply")[0].split("应急物资")[0]
        title = localize(_("Heavy rainstorm: %(county)s, three townships", county=county_name),
                         self.language)
        incident = self.client.call("PATCH", f"/api/v1/incidents/{state['incident']}", {
            "level": "IV", "title": title, "sites": sites})
        self.echo(_("  %(title)s (level %(level)s)", title=incident["title"],
                    level=incident["level"]))
        self.echo(self.table([_("site"), _("township depot"), _("road node"), _("people")],
                             [[s["id"], self.names.get(s["warehouse"], s["warehouse"]),
                               s["node"], s["population"]] for s in incident["sites"]]))
        self.echo(_("  %(people)s people, %(days)s days", people=f"{sum(POPULATION):,}",
                    days=DAYS))

    def plan(self, state: dict) -> None:
        plan = self.client.call(
            "POST", f"/api/v1/incidents/{state['incident']}/allocations",
            {"population_days": DAYS}, {"Idempotency-Key": f"storm:{state['incident']}:plan"})
        state["plan"] = self.outcome.plan = plan["id"]
        live = [s for s in plan["shipments"] if s["status"] != "stranded"]
        self.echo(_("  plan %(plan)s: %(status)s, %(shipments)s shipments in %(trips)s trips "
                    "from %(depots)s depots, graph version %(version)s",
                    plan=plan["id"], status=WORDS.get(plan["status"], plan["status"]),
                    shipments=f"{len(live):,}", trips=f"{len(plan['trips']):,}",
                    depots=f"{len({s['from'] for s in live}):,}",
                    version=plan["graph_version"]))
        self._cost(plan)
        self._demand_table(plan)
        self._by_level(live, plan["trips"])
        self._trips(plan["trips"])
        self._unmet(plan["unmet"])

    def landslide(self, state: dict) -> None:
        plan = self.client.call("GET", f"/api/v1/allocations/{state['plan']}")
        edge_id, load = self._road_to_close(plan)
        if edge_id is None:
            raise StepFailed("landslide", localize(_(
                "the plan uses no road that can close without cutting a site off (nothing to "
                "re-plan)"), self.language))
        edge = self.roads.edges[edge_id]
        answer = self.client.call("POST", "/api/v1/roads/events", {"events": [{
            "edge": edge_id, "status": "closed", "reason": "landslide"}]})
        self.outcome.closed_edge = edge_id
        self.echo(self.table([_("road"), _("class"), _("between"), _("km"),
                              _("shipments on it"), _("units"), _("graph version")],
                             [[edge_id, ROADS.get(edge["road_class"], edge["road_class"]),
                               f"{edge['from']} - {edge['to']}", edge["length_km"], load[0],
                               load[1], answer["graph_version"]]]))
        escalated = self.client.call("PATCH", f"/api/v1/incidents/{state['incident']}",
                                     {"level": "III"})
        last = escalated["history"][-1]
        self.echo(_("  the incident escalates: level %(before)s -> %(after)s (%(actor)s, on "
                    "record with %(entries)s amendments)", before=last["changes"]["level"]["from"],
                    after=last["changes"]["level"]["to"], actor=last["actor"],
                    entries=len(escalated["history"])))

    def replan(self, state: dict) -> None:
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
        self.echo(self.table([_("change"), _("shipments"), _("units")],
                             [[WORDS[kind], len(rows), sum(r["quantity"] for r in rows)]
                              for kind, rows in changes.items()]))
        moved = sorted(changes["rerouted"] + changes["re-sourced"],
                       key=lambda r: (-r["quantity"], r["id"]))
        if moved:
            self.echo(_("  the largest of them:"))
            self.echo(self.table([_("from"), _("to"), _("item"), _("qty"), _("now by road"),
                                  _("minutes")],
                                 [[self._short(r["from"]), self._short(r["to"]),
                                   self._item(r["item"]),
                                   r["quantity"], self._road(r["path"]),
                                   f"{r['was']:.0f} -> {r['minutes']:.0f}" if "was" in r
                                   else _("%(minutes).0f (new source)", minutes=r["minutes"])]
                                  for r in moved], 10))
        self.echo(_("  now %(trips)s trips; objective %(objective)s (re-sourced, so no bound)",
                    trips=len(plan["trips"]), objective=f"{plan['objective']:,.0f}"))
        still = [s["id"] for s in plan["shipments"]
                 if s["status"] != "stranded" and uses(s["path"], edge)]
        if still:
            raise StepFailed("re-plan", f"shipments {still} still use closed road "
                                        f"{self.outcome.closed_edge}")
        self._unmet(plan["unmet"])

    def dispatch(self, state: dict) -> None:
        plan = self.client.call("POST", f"/api/v1/allocations/{state['plan']}/dispatch")
        state["dispatched_at"] = datetime.now(UTC)
        live = [s for s in plan["shipments"] if s["status"] != "stranded"]
        depots = {s["from"] for s in live}
        self.outcome.shipped = sum(s["quantity"] for s in live)
        self.echo(_("  plan %(plan)s %(status)s at %(time)s UTC: %(shipments)s shipments in "
                    "%(trips)s trips, %(units)s units from %(depots)s depots", plan=plan["id"],
                    status=WORDS.get(plan["status"], plan["status"]),
                    time=f"{state['dispatched_at']:%H:%M}", shipments=f"{len(live):,}",
                    trips=f"{len(plan['trips']):,}", units=f"{self.outcome.shipped:,}",
                    depots=f"{len(depots):,}"))
        start = state["dispatched_at"]
        per_site: dict[str, list] = {}
        for shipment in live:
            entry = per_site.setdefault(shipment["to"], [0, 0, math.inf, 0.0])
            entry[0] += 1
            entry[1] += shipment["quantity"]
            entry[2] = min(entry[2], shipment["minutes"])
            entry[3] = max(entry[3], shipment["minutes"])
        self.echo(self.table([_("site"), _("shipments"), _("units"), _("first arrives"),
                              _("last arrives")],
                             [[self._short(site), n, units,
                               f"{start + timedelta(minutes=first):%H:%M} UTC",
                               f"{start + timedelta(minutes=last):%H:%M} UTC"]
                              for site, (n, units, first, last) in sorted(per_site.items())]))

    def deliveries(self, state: dict) -> None:
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
        self.echo(_("  plan %(plan)s: %(status)s", plan=plan["id"],
                    status=WORDS.get(plan["status"], plan["status"])))
        self.echo(self.table([_("site"), _("shipments"), _("units"), _("last arrival (UTC)")],
                             [[self._short(site), n, units, last[11:16]]
                              for site, (n, units, last) in sorted(by_site.items())]))

    def restock(self, state: dict) -> None:
        plan = self.client.call("GET", f"/api/v1/allocations/{state['plan']}")
        sources = {(s["from"], s["item"]) for s in plan["shipments"]
                   if s["status"] != "stranded"}
        fallen = {f"{row['warehouse']}/{row['item']}": row
                  for row in self.client.pages("/api/v1/stock?below_min=true")
                  if (row["warehouse"], row["item"]) in sources}
        if not fallen:
            self.echo(_("  no depot fell below its min"))
            return
        paths = self.paths
        by_level: dict[str, list[int]] = {}
        for row in fallen.values():
            entry = by_level.setdefault(self.levels.get(row["warehouse"], "?"), [0, 0])
            entry[0] += 1
            entry[1] += row["target"] - row["on_hand"]
        self.echo(_("  %(count)s balances fell below their min:", count=f"{len(fallen):,}"))
        self.echo(self.table([_("level"), _("balances"), _("units to target")],
                             [[WORDS.get(level, level), n, units] for level, (n, units) in
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
                              "reason": _("the prefecture depot has no level above")}
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
        self.echo(_("  %(lines)s transfer lines in %(transfers)s transfers (in transit until "
                    "each keeper receives them); %(covered)s of the %(fallen)s fallen balances "
                    "covered", lines=len(lines), transfers=len(self.outcome.transfers),
                    covered=len(restores & set(fallen)), fallen=len(fallen)))
        ordered = sorted(lines, key=lambda line: (f"{line['destination']}/{line['item']}"
                                                  not in fallen, line["destination"]))
        self.echo(self.table([_("from"), _("to"), _("item"), _("qty"), _("by road"),
                              _("arrives")],
                             [[self._short(line["source"]), self._short(line["destination"]),
                               self._item(line["item"]), line["quantity"],
                               self._road(line["path"]),
                               self._duration(line["minutes"])] for line in ordered], 15))
        if short:
            reasons: dict[str, list[int]] = {}
            for entry in short:
                reason = entry["reason"]
                if "no more to spare" in reason:
                    reason = _("the depot above has no more to spare above its own min")
                counted = reasons.setdefault(reason, [0, 0])
                counted[0] += 1
                counted[1] += entry["quantity"]
            self.echo(_("  not restocked (the response used what the level above could "
                        "spare):"))
            self.echo(self.table([_("why"), _("balances"), _("units")],
                                 [[why, n, units] for why, (n, units) in sorted(reasons.items())]))
        edge = self.roads.edges[self.outcome.closed_edge]
        if any(uses(line["path"], edge) for line in lines):
            raise StepFailed("restock", "a transfer is routed over the closed road")

    def check(self, state: dict) -> None:
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
        self.echo(self.table([_("demanded"), _("shipped and issued"), _("delivered"), _("unmet"),
                              _("closed road on a route")],
                             [[demand, sum(planned.values()),
                               sum(s["delivered"] for s in plan["shipments"]),
                               self.outcome.unmet, _("no")]]))

    # --- helpers -------------------------------------------------------------------------
    def _learn(self) -> None:
        """The roads, depots and items the story names."""
        self.roads = Roads(self.client.call("GET", "/api/v1/roads"))
        warehouses = self.client.pages("/api/v1/warehouses")
        self.levels = {w["code"]: w["level"] for w in warehouses}
        self.paths = {w["code"]: w["path"] for w in warehouses}
        self.names.update({w["code"]: self._name(w) for w in warehouses})
        self.items = {i["sku"]: self._name(i) for i in self.client.pages("/api/v1/items")}

    def _place(self) -> tuple[str, list[str]]:
        """The county (an active depot with at least three townships) and its three
        townships nearest to each other, around the one nearest the county seat."""
        counties = self.client.pages("/api/v1/warehouses?level=county&status=active")
        self.names.update({c["code"]: self._name(c) for c in counties})
        order = sorted(counties, key=lambda c: (c["code"] != (self.county or PREFERRED_COUNTY),
                                                c["code"]))
        if self.county and (not order or order[0]["code"] != self.county):
            raise StepFailed("warning", localize(_(
                "no active county depot %(county)s", county=self.county), self.language))
        for county in order:
            townships = [t for t in self.client.pages(
                f"/api/v1/warehouses?level=township&parent={county['code']}&status=active")
                if t.get("road_node") and t.get("lon") is not None]
            if len(townships) < 3:
                continue
            self.names.update({t["code"]: self._name(t) for t in townships})

            def far(a: dict, b: dict) -> float:
                return (a["lon"] - b["lon"]) ** 2 + (a["lat"] - b["lat"]) ** 2

            first = min(townships, key=lambda t: (far(t, county), t["code"]))
            rest = sorted((t for t in townships if t is not first),
                          key=lambda t: (far(t, first), t["code"]))[:2]
            return county["code"], [first["code"]] + [t["code"] for t in rest]
        raise StepFailed("warning", localize(_(
            "no active county depot with three townships: seed the suite first (emsupply seed "
            "qiandongnan)"), self.language))

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
        self.echo(self.table([_("item"), _("needed"), _("planned"), _("unmet")],
                             [[self._item(item), need, shipped.get(item, 0),
                               need - shipped.get(item, 0)]
                              for item, need in sorted(totals.items())]))

    def _cost(self, plan: dict) -> None:
        """What the plan minimises (unit-minutes and trips), its lower bound and the gap."""
        if plan.get("objective") is None:
            return
        bound = plan.get("bound")
        self.echo(_("  cost %(cost)s unit-minutes + %(trips)s trips = objective %(objective)s; "
                    "lower bound %(bound)s, gap %(gap)s",
                    cost=f"{plan['cost']:,.0f}", trips=len(plan["trips"]),
                    objective=f"{plan['objective']:,.0f}",
                    bound="-" if bound is None else f"{bound:,.0f}",
                    gap="-" if plan.get("gap") is None else f"{plan['gap']:.2%}"))

    def _by_level(self, live: list[dict], trips: list[dict]) -> None:
        """Where the stock comes from, level by level, and in which vehicles."""
        rows: dict[str, list] = {}
        for shipment in live:
            entry = rows.setdefault(self.levels.get(shipment["from"], "?"),
                                    [set(), 0, 0, 0, 0.0, set()])
            entry[0].add(shipment["from"])
            entry[1] += 1
            entry[2] += shipment["quantity"]
        for trip in trips:
            entry = rows.setdefault(self.levels.get(trip["from"], "?"),
                                    [set(), 0, 0, 0, 0.0, set()])
            entry[3] += 1
            entry[4] += trip["weight_kg"] / 1000
            entry[5].add(trip["vehicle"])
        self.echo(self.table([_("sent from"), _("depots"), _("shipments"), _("units"),
                              _("trips"), _("vehicle"), _("tonnes")],
                             [[WORDS.get(level, level), len(depots), n, units, t,
                               "/".join(localize(WORDS.get(v, v), self.language)
                                        for v in sorted(vehicles)), tonnes]
                              for level, (depots, n, units, t, tonnes, vehicles) in
                              sorted(rows.items(), key=lambda kv: LEVEL_RANK.get(kv[0], 9))]))

    def _trips(self, trips: list[dict]) -> None:
        """The largest trips: who sends which vehicle with what, by which road, how long."""
        rows = [[self._short(t["from"]), self._short(t["to"]), WORDS.get(t["vehicle"],
                                                                          t["vehicle"]),
                 t["weight_kg"] / 1000, self._load(t["lines"]), self._road(t["path"]),
                 t["distance_km"], self._duration(t["minutes"])]
                for t in sorted(trips, key=lambda t: (-t["weight_kg"], t["minutes"],
                                                      t["from"]))]
        self.echo(_("  the largest trips (who sends what, in which vehicle, by which road):"))
        self.echo(self.table([_("from"), _("to"), _("vehicle"), _("tonnes"), _("load"),
                              _("by road"), _("km"), _("arrives")], rows, 12))

    def _unmet(self, unmet: list[dict]) -> None:
        if not unmet:
            self.echo(_("  unmet: nothing"))
            return
        self.echo(_("  unmet:"))
        self.echo(self.table([_("site"), _("item"), _("qty"), _("why")],
                             [[u["site"], u["item"], u["quantity"],
                               u.get("detail") or u["reason"]] for u in unmet], 20))

    # --- saying it -------------------------------------------------------------------------
    def table(self, headers: list[str], rows: list[list[Any]], limit: int | None = None) -> str:
        return table(headers, rows, limit, self.language)

    def _name(self, row: dict) -> str:
        """A warehouse's or an item's name in the story's language."""
        if self.language == "zh" and row.get("name_zh"):
            return row["name_zh"]
        return row["name"]

    def _short(self, code: str) -> str:
        """In Chinese, a depot's name without the words every depot's name ends with, and its
        code; in English its code (the data set's English names are made up)."""
        name = self.names.get(code) if self.language == "zh" else None
        if not name:
            return code
        for tail in ("应急物资储备库", "应急物资储备中心", "应急物资储备点"):
            name = name.removesuffix(tail)
        return f"{name} {code}"

    def _item(self, sku: str) -> str:
        return self.items.get(sku, sku) if self.language == "zh" else sku

    def _road(self, path: list[str]) -> str:
        return self.roads.describe(path, language=self.language)

    def _load(self, lines: list[dict]) -> str:
        top = sorted(lines, key=lambda line: -line["quantity"])
        text = ", ".join(f"{self._item(line['item'])} {line['quantity']:,}" for line in top[:2])
        more = len(top) - 2
        return text + (localize(_(" +%(more)s items", more=more), self.language)
                       if more > 0 else "")

    def _duration(self, minutes: float) -> str:
        hours, rest = divmod(round(minutes), 60)
        said = _("+%(hours)s h %(minutes)02d min", hours=hours, minutes=rest) if hours \
            else _("+%(minutes)s min", minutes=rest)
        return localize(said, self.language)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
