"""The allocation solver: which depot sends what to which site, by which road, arriving when.

Pure: (graph version, stock per depot and item, demands, policy) -> Plan; no I/O.

What the plan optimises, per item (items are independent transportation problems):
  1. meet as much priority-1 demand as stock and open roads allow, then priority 2, then 3
     (lexicographically: no amount of minutes is worth one unit of higher-priority demand);
  2. `graded` only: among those, the fewest tier steps, a cost tier per unit: 0 from the site's
     own township, 1 from elsewhere in its county, 2 from the rest of the prefecture. So a site
     draws on its county only for what its township cannot give, and so on; priority still comes
     first, so a tier never starves a more urgent site (cost tiers, not tiered rounds);
  3. the least total quantity x minutes.

How it is solved exactly without the whole depot network:
  * Costs: one reverse Dijkstra per site on the current graph version (`RoadGraph.from_site`,
    cached per version), searched only as far as needed: the radius grows until the depots within
    it hold `COVER` x the site's demand of each item (or the search covers the whole graph).
  * Candidates: per demand line, its nearest allowed depots holding `COVER` x its quantity.
  * Restricted solve: an exact min-cost flow (successive shortest paths, `_transport`) on the
    candidates. Every augmentation goes along a cheapest residual path; the priority of the site it
    ends at is compared first and minutes second, so the priorities need no big-M penalty and the
    float minutes are never rounded.
  * Proof over ALL depots (duals): from the optimal restricted flow, the marginal cost `phi(j)` of
    each demand line j is the most one extra unit delivered to j could save: the costliest unit it
    receives, or what a chain of re-assignments through other lines saves (longest path in the
    residual network), or infinity when j, or a line j can pass a unit on to, still has unmet
    demand. These are the site potentials of an optimal dual. A depot left out with spare stock
    would improve the plan exactly when its cost to some line j is below phi(j) (a cheaper unit,
    or any unit for a short site); one that is farther from every line than phi(j) cannot, because
    any improving cycle enters the network through a single new depot. So: every allowed depot
    with cost < phi(j) must be a candidate, and each site's search must reach phi(j) minutes (or
    `max_minutes`), which certifies the depots it has not even seen. Violators are added, the
    search widened, and the restricted problem re-solved until the proof holds.
  * Graded tiers enter the cost as tier x BIG + minutes, BIG being several times the sum of all
    open road minutes, so that they order exactly before minutes; a site drawing beyond its own
    township therefore has its search widened to the whole graph (unseen depots of its township
    could be far away yet preferred).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from allocation_svc import trips as driven
from allocation_svc.roadgraph import RoadGraph, Route, SiteTree
from allocation_svc.trips import Driving, Trip
from allocation_svc.vocabulary import (
    ACTIVE,
    BACKBONE,
    BACKBONE_LEVELS,
    COUNTY,
    GRADED,
    LEVELS,
    NEAREST,
    POLICIES,
    PREFECTURE_LEVELS,
    TOWNSHIP,
    VILLAGE,
)
from shared.i18n import Message, _, join

COVER = 3  # first candidates per demand: the nearest depots holding COVER x its quantity
INF = math.inf
TIER_NAMES = (_("own-township"), _("county"), _("prefecture"))
BACKBONE_TIER_NAMES = (_("incident townships"), _("own county depot"), _("prefecture backbone"),
                       _("township centres"), _("village points"))
OPEN_TIER_NAMES = (_("incident townships"), _("whole prefecture"))
UNMET_REASONS = ("no_stock_in_reach", "no_open_road", "beyond_max_minutes")


@dataclass(frozen=True)
class Depot:
    """A warehouse that may send. `stock` is the available quantity (on hand - reserved)."""

    code: str
    node: str | None  # road node id; None or unknown: no road reaches it
    level: str = "village"
    township: str | None = None
    county: str | None = None
    status: str = ACTIVE
    stock: dict[str, int] = field(default_factory=dict)
    minimum: dict[str, int] = field(default_factory=dict)
    in_incident: bool = False  # in one of the incident's townships


@dataclass(frozen=True)
class Demand:
    """One need of one incident site: `quantity` of `item`, priority 1 (highest) to 3."""

    site: str
    node: str  # road node id of the site
    item: str
    quantity: int
    priority: int = 2
    township: str | None = None
    county: str | None = None
    unit_weight_kg: float = 0.0  # for loading vehicles; 0 when unknown


@dataclass(frozen=True)
class Policy:
    """How depots may be drawn, as tiers of cost (see `_Context._tiers`):
    `nearest`: the fastest first, no tiers;
    `graded`: township -> county -> prefecture, except for incident levels I and II, which go
      straight to the whole prefecture like `nearest`;
    `backbone` (州级为支撑、县级为基础、乡村为补充): the incident's townships (their centres and
      village points, on the spot), then the sites' county depot, then the prefecture depot and
      the other county depots, then other township centres; village points outside the incident
      only with `outside_villages` (last). Levels I and II open the whole prefecture after the
      incident's townships.
    `driving`: also load the shipments into vehicles (`trips`); for `backbone`, re-choose the
    depots within the tiers for the fewest unit-minutes plus trips (`trips.optimise`)."""

    kind: str = NEAREST
    max_minutes: float | None = None
    keep_min: bool = False  # depots outside the incident never go below their `min`
    incident_level: str | None = None
    outside_villages: bool = False
    driving: Driving | None = None


@dataclass(frozen=True)
class Shipment:
    from_: str  # depot code
    to: str  # site id
    item: str
    quantity: int
    minutes: float
    distance_km: float
    path: list[str]  # node ids, depot first
    edges: list[str]  # edge ids driven, so a re-plan can tell which shipments a closure hits
    reason: str  # why this depot, for the commander


@dataclass(frozen=True)
class Unmet:
    """Demand left unmet at a site, with why. Reasons, checked in this order against the stock
    active depots could still send after the plan (keep_min respected):
      beyond_max_minutes: some of it has an open road to the site, but only beyond max_minutes;
      no_open_road: some of it exists, but no open road joins its depots to the site;
      no_stock_in_reach: none of it: every depot the site can reach is empty, used up by this or
        more urgent demands, held back by keep_min, or not active.
    (An optimal plan never leaves usable stock within reach while demand is unmet.)"""

    site: str
    item: str
    quantity: int
    reason: str
    detail: str


@dataclass(frozen=True)
class Plan:
    graph_version: int
    shipments: list[Shipment]
    unmet: list[Unmet]
    cost: float  # sum of quantity x minutes
    stats: dict[str, int] = field(default_factory=dict)  # searches, candidates, rounds
    trips: list[Trip] = field(default_factory=list)
    # With `driving`: cost + trip_cost x trips, a lower bound of it, and the relative gap.
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None


@dataclass
class DepotTable:
    """The depots as columns (one row per depot): the solver's working form. Build it with
    `from_depots`; at national scale keep one per stock snapshot, since a Python object per depot
    costs more than the searches. Node indexes belong to one road layout (all its versions).
    `minimum` may be left out (None) for plans without keep_min."""

    codes: list[str]
    node: np.ndarray  # int64 road node index, -1 when unknown
    active: np.ndarray  # bool: status "active" (only active warehouses send)
    in_incident: np.ndarray  # bool
    township: np.ndarray  # object
    county: np.ndarray  # object
    items: list[str]
    available: np.ndarray  # int64 (depots, items)
    minimum: np.ndarray | None  # int64 (depots, items)
    level: np.ndarray | None = None  # object: prefecture, county, township, village

    def __post_init__(self) -> None:
        if self.level is None:
            self.level = np.full(len(self.codes), VILLAGE, dtype=object)

    @classmethod
    def from_depots(
        cls,
        graph: RoadGraph,
        depots: Sequence[Depot],
        items: Iterable[str],
        with_minimum: bool = True,
    ) -> DepotTable:
        items = list(dict.fromkeys(items))
        shape = (len(depots), len(items))

        def column(name: str) -> np.ndarray:
            values = (getattr(d, name).get(i, 0) for d in depots for i in items)
            flat = np.fromiter(values, dtype=np.int64, count=shape[0] * shape[1])
            return np.asfortranarray(flat.reshape(shape))  # an item's column is contiguous

        return cls(
            codes=[d.code for d in depots],
            node=graph.node_indexes([d.node for d in depots]),
            active=np.array([d.status == ACTIVE for d in depots], dtype=bool),
            in_incident=np.array([d.in_incident for d in depots], dtype=bool),
            township=np.array([d.township for d in depots], dtype=object),
            county=np.array([d.county for d in depots], dtype=object),
            items=items,
            available=column("stock"),
            minimum=column("minimum") if with_minimum else None,
            level=np.array([d.level for d in depots], dtype=object),
        )

    def __len__(self) -> int:
        return len(self.codes)


def solve(
    graph: RoadGraph,
    depots: Sequence[Depot] | DepotTable,
    demands: Sequence[Demand],
    policy: Policy | None = None,
) -> Plan:
    """The allocation plan for `demands` on this graph version (see the module docstring)."""
    policy = policy or Policy()
    _check(demands, policy)
    items = list(dict.fromkeys(d.item for d in demands))
    if isinstance(depots, DepotTable):
        table = depots
        if policy.keep_min and table.minimum is None:
            raise ValueError("keep_min needs a DepotTable built with its minimum levels")
    else:
        table = DepotTable.from_depots(graph, depots, items, with_minimum=policy.keep_min)
    searches_before = graph.searches
    ctx = _Context(graph, table, policy, demands, items)
    ctx.cover_sites()
    for item in items:
        ctx.solve_item(item)
    optimised = ctx.optimise_trips() if policy.driving else None
    for item in items:
        ctx.record(item)
    cost = float(sum(s.quantity * s.minutes for s in ctx.shipments))
    ctx.stats["searches"] = graph.searches - searches_before
    plan = Plan(graph.version, ctx.shipments, ctx.unmet, cost, ctx.stats)
    return ctx.drive(plan, optimised) if policy.driving else plan


def _check(demands: Sequence[Demand], policy: Policy) -> None:
    if policy.kind not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy.kind!r}")
    if policy.incident_level not in (None, *LEVELS):
        raise ValueError(f"incident level must be one of {LEVELS}")
    if policy.max_minutes is not None and not policy.max_minutes > 0:
        raise ValueError("max_minutes must be > 0")
    for d in demands:
        if not d.unit_weight_kg >= 0:
            raise ValueError(f"unit weight must be >= 0, got {d.unit_weight_kg!r}")
        if not isinstance(d.quantity, int | np.integer) or d.quantity <= 0:
            raise ValueError(f"demand quantity must be a whole number > 0, got {d.quantity!r}")
        if d.priority not in (1, 2, 3):
            raise ValueError(f"priority must be 1, 2 or 3, got {d.priority!r}")


class _SiteView:
    """One site's minutes from every depot, known as far as its search has gone."""

    def __init__(self, graph: RoadGraph, node: int, depot_node: np.ndarray) -> None:
        self.graph, self.node = graph, node
        self._depot_node = np.maximum(depot_node, 0)
        self._no_node = depot_node < 0
        self.tree: SiteTree | None = None

    @property
    def limit(self) -> float:
        return self.tree.limit if self.tree is not None else -INF

    def ensure(self, limit: float) -> None:
        """Search at least `limit` minutes out (inf: the whole graph)."""
        if limit > self.graph.open_minutes_total:
            limit = INF
        if self.tree is not None and self.tree.limit >= limit:
            return
        self.tree = self.graph.from_site(self.node, limit)
        minutes = self.tree.minutes[self._depot_node]
        minutes[self._no_node] = INF
        self.minutes = minutes  # per depot; inf: unreachable or not searched yet
        known = np.flatnonzero(np.isfinite(minutes))
        self.known = known[np.argsort(minutes[known], kind="stable")]  # depots, nearest first
        self.known_minutes = minutes[self.known]


class _Context:
    """The state of one `solve` call."""

    def __init__(
        self,
        graph: RoadGraph,
        table: DepotTable,
        policy: Policy,
        demands: Sequence[Demand],
        items: list[str],
    ) -> None:
        self.graph, self.table, self.demands, self.policy = graph, table, demands, policy
        self.max_minutes = INF if policy.max_minutes is None else float(policy.max_minutes)
        wide = policy.incident_level in PREFECTURE_LEVELS
        self.tier_names: tuple[str, ...] | None = None
        if policy.kind == GRADED and not wide:
            self.tier_names = TIER_NAMES
        elif policy.kind == BACKBONE:
            self.tier_names = OPEN_TIER_NAMES if wide else BACKBONE_TIER_NAMES
        # A village point outside the incident keeps its stock for its own village's first hour.
        self.reserve_only = (table.level == VILLAGE) & ~table.in_incident \
            if policy.kind == BACKBONE and not policy.outside_villages \
            else np.zeros(len(table), dtype=bool)
        self.tier_heads = [_("%(tier)s tier: ", tier=t) for t in self.tier_names or ()]
        self.tier_outside = [_("outside the %(tier)s tier", tier=t) for t in self.tier_names or ()]
        self.optimised = False
        self.active = table.active
        self.available: dict[str, np.ndarray] = {}  # per item and depot, >= 0
        self.sendable: dict[str, np.ndarray] = {}  # what each depot may send: active, keep_min
        for item in items:
            if item not in table.items:
                self.available[item] = self.sendable[item] = np.zeros(len(table), np.int64)
                continue
            c = table.items.index(item)
            have = np.maximum(table.available[:, c], 0)
            self.available[item] = have
            if policy.keep_min:  # solve() made sure the table has its minimum levels
                held = np.where(table.in_incident, 0, np.maximum(table.minimum[:, c], 0))
                have = np.maximum(have - held, 0)
            self.sendable[item] = np.where(self.active & ~self.reserve_only, have, 0)
        node_of = {d.node for d in demands}
        self.sites = {
            node: _SiteView(graph, graph.node_index(node), table.node) for node in node_of
        }
        self.shipments: list[Shipment] = []
        self.unmet: list[Unmet] = []
        self.routes: dict[tuple[int, int], Route] = {}
        self.mark = np.zeros(len(table), dtype=bool)  # scratch: depots of one site
        self.stats = {"candidates": 0, "rounds": 0}
        # item -> [lines, views, tiers, candidates, flow, unmet per line], until recorded
        self.solved: dict[str, list] = {}
        self.source_level: dict[str, str] = {}
        self.flow_minutes = 0.0

    # ---- searches ------------------------------------------------------------------------------

    def cover_sites(self) -> None:
        """Search each site until the depots within reach hold COVER x its demand of every item
        (or the search spans the graph): a first guess of the radius from the stock density,
        doubled until it holds."""
        need: dict[str, dict[str, int]] = {}
        for d in self.demands:
            per_item = need.setdefault(d.node, {})
            per_item[d.item] = per_item.get(d.item, 0) + COVER * d.quantity
        total = {item: int(cap.sum()) for item, cap in self.sendable.items()}
        n = max(self.graph.node_count, 1)
        hop = self.graph.open_minutes_total / n  # open-road minutes per node
        for node, per_item in need.items():
            want = {item: min(q, total[item]) for item, q in per_item.items()}
            share = max(q / max(total[item], 1) for item, q in want.items())
            nodes_needed = 2.0 * share * n
            radius = INF if nodes_needed > n / 4 else hop * math.sqrt(max(nodes_needed, 16.0))
            view = self.sites[node]
            while True:
                view.ensure(min(radius, self.max_minutes))
                if math.isinf(view.limit) or view.limit >= self.max_minutes:
                    break
                within = view.known[: np.searchsorted(view.known_minutes, view.limit, "right")]
                if all(self.sendable[i][within].sum() >= q for i, q in want.items()):
                    break
                radius = 2.0 * view.limit if view.limit > 0 else INF

    # ---- one item ------------------------------------------------------------------------------

    def solve_item(self, item: str) -> None:
        cap = self.sendable[item]
        lines = [d for d in self.demands if d.item == item]
        views = [self.sites[d.node] for d in lines]
        qty = [int(d.quantity) for d in lines]
        rank = [d.priority for d in lines]
        tiers = [self._tiers(d) for d in lines]
        big = (4.0 * len(lines) + 4.0) * (self.graph.open_minutes_total + 1.0)

        seen: dict[int, tuple[SiteTree | None, np.ndarray, np.ndarray]] = {}

        def allowed(j: int) -> tuple[np.ndarray, np.ndarray]:
            """Known depots with stock line j may draw, cheapest first, and their costs."""
            view = views[j]
            if j in seen and seen[j][0] is view.tree:
                return seen[j][1], seen[j][2]
            idx = view.known[: np.searchsorted(view.known_minutes, self.max_minutes, "right")]
            idx = idx[cap[idx] > 0]
            costs = view.minutes[idx]
            if tiers[j] is not None:
                t = tiers[j][idx]
                order = np.argsort(t, kind="stable")
                idx, costs = idx[order], costs[order] + t[order] * big
            seen[j] = (view.tree, idx, costs)
            return idx, costs

        in_cand = np.zeros(len(cap), dtype=bool)
        for j in range(len(lines)):
            idx, _ = allowed(j)
            in_cand[idx[: np.searchsorted(np.cumsum(cap[idx]), COVER * qty[j]) + 1]] = True
        while True:
            self.stats["rounds"] += 1
            cand = np.flatnonzero(in_cand)
            cost = np.empty((len(cand), len(lines)))
            for j, view in enumerate(views):
                minutes = view.minutes[cand]
                extra = 0.0 if tiers[j] is None else tiers[j][cand] * big
                cost[:, j] = np.where(minutes <= self.max_minutes, minutes + extra, INF)
            flow, rem = _transport(cost, cap[cand].tolist(), qty, rank)
            phi = _marginal_costs(cost.tolist(), flow, rem)
            complete = True
            for j, view in enumerate(views):
                reach = INF if phi[j] >= big else phi[j]  # a higher tier: unseen nearer depots
                view.ensure(min(reach, self.max_minutes))
                idx, costs = allowed(j)
                bound = phi[j] - 1e-9 * (1.0 + phi[j]) if phi[j] < INF else INF
                below = idx[: np.searchsorted(costs, bound)]  # would improve the plan
                missing = below[~in_cand[below]]
                if len(missing):
                    in_cand[missing] = True
                    complete = False
            if complete:
                break
        self.stats["candidates"] += len(cand)
        self.solved[item] = [lines, views, tiers, cand, flow, rem]
        for j, f in enumerate(flow):
            self.flow_minutes += sum(float(views[j].minutes[cand[d]]) * q for d, q in f.items())

    def record(self, item: str) -> None:
        self._record(item, *self.solved.pop(item))

    def _tiers(self, line: Demand) -> np.ndarray | None:
        """Per depot, the policy's tier for this demand (see `Policy`); None: no tiers.
        graded: 0 own township, 1 own county, 2 other. backbone: 0 the incident's townships,
        1 the site's county depot, 2 the prefecture and other county depots, 3 other township
        centres, 4 other village points (when allowed); levels I and II: 0 the incident's
        townships, 1 the rest."""
        if self.tier_names is None:
            return None
        t, none = self.table, np.zeros(len(self.table), dtype=bool)
        if self.policy.kind == GRADED:
            town = t.township == line.township if line.township is not None else none
            county = t.county == line.county if line.county is not None else none
            return np.where(town, 0.0, np.where(county, 1.0, 2.0))
        if len(self.tier_names) == 2:
            return np.where(t.in_incident, 0.0, 1.0)
        own = (t.level == COUNTY) & (t.county == line.county) if line.county is not None else none
        return np.select([t.in_incident, own, np.isin(t.level, BACKBONE_LEVELS),
                          t.level == TOWNSHIP], [0.0, 1.0, 2.0, 3.0], 4.0)

    # ---- trips ---------------------------------------------------------------------------------

    def optimise_trips(self) -> driven.Optimised | None:
        """For `backbone`: the depots of every line re-chosen, all items together, for the least
        unit-minutes plus trips, each line's quantity and each item's tier total kept."""
        driving = self.policy.driving
        if self.policy.kind != BACKBONE or driving is None or not driving.optimise:
            return None
        weight = self._weights()
        problems = []
        for item, (lines, views, tiers, cand, flow, rem) in self.solved.items():
            cost = np.empty((len(cand), len(lines)))
            for j, view in enumerate(views):
                minutes = view.minutes[cand]
                cost[:, j] = np.where(minutes <= self.max_minutes, minutes, INF)
            tier = None if tiers[0] is None else np.column_stack([t[cand] for t in tiers])
            problems.append(driven.ItemProblem(
                item=item, weight_kg=weight.get(item, 0.0), sites=[d.site for d in lines],
                met=[int(d.quantity) - r for d, r in zip(lines, rem, strict=True)], cand=cand,
                cost=cost, tier=tier, cap=self.sendable[item][cand], flow=flow))
        capacity = np.zeros(len(self.table))
        for prob in problems:
            capacity[prob.cand] = [driving.vehicle(level).capacity_kg
                                   for level in self.table.level[prob.cand].tolist()]
        result = driven.optimise(problems, capacity, driving)
        self.stats["trip_variables"] = result.variables if result else 0
        if result is not None:
            for state, flows in zip(self.solved.values(), result.flows, strict=True):
                state[4] = flows
            self.optimised = True
        return result

    def drive(self, plan: Plan, optimised: driven.Optimised | None) -> Plan:
        """The plan's trips, its objective (cost + trip_cost x trips), a lower bound and the gap:
        the MILP's bound when it ran, never below the flow's minutes plus the fewest trips the
        sites' loads need in the largest vehicles."""
        driving = self.policy.driving
        weight = self._weights()
        trips = driven.pack(plan.shipments,
                            lambda code: driving.vehicle(self.source_level.get(code)), weight)
        objective = plan.cost + driving.trip_cost * len(trips)
        load: dict[str, float] = {}
        for s in plan.shipments:
            load[s.to] = load.get(s.to, 0.0) + s.quantity * weight.get(s.item, 0.0)
        largest = max(v.capacity_kg for v in driving.vehicles.values())
        bound = self.flow_minutes + driving.trip_cost * driven.fewest_trips(load, largest)
        if optimised is not None:
            bound = max(bound, optimised.bound)
        bound = min(bound, objective)
        self.stats["trips"] = len(trips)
        self.stats["trips_exact"] = int(optimised is not None and optimised.exact)
        return replace(plan, trips=trips, objective=objective, bound=bound,
                       gap=(objective - bound) / objective if objective > 0 else 0.0)

    def _weights(self) -> dict[str, float]:
        weight: dict[str, float] = {}
        for d in self.demands:
            weight[d.item] = max(weight.get(d.item, 0.0), float(d.unit_weight_kg))
        return weight

    # ---- results -------------------------------------------------------------------------------

    def _record(
        self,
        item: str,
        lines: list[Demand],
        views: list[_SiteView],
        tiers: list[np.ndarray | None],
        cand: np.ndarray,
        flow: list[dict[int, int]],
        rem: list[int],
    ) -> None:
        spare = self.sendable[item].copy()
        sent: dict[str, dict[int, int]] = {}  # site -> depot -> quantity
        short: dict[str, int] = {}
        line_of: dict[str, int] = {}
        for j, line in enumerate(lines):
            line_of.setdefault(line.site, j)
            to_site = sent.setdefault(line.site, {})
            for d, q in flow[j].items():
                spare[cand[d]] -= q
                to_site[int(cand[d])] = to_site.get(int(cand[d]), 0) + q
            if rem[j]:
                short[line.site] = short.get(line.site, 0) + rem[j]
        for site, to_site in sent.items():
            if not to_site:
                continue
            j = line_of[site]
            view = views[j]
            depots = sorted(to_site, key=lambda d, m=view.minutes: (m[d], d))
            reasons = self._why(item, view, tiers[j], depots, spare)
            for depot, reason in zip(depots, reasons, strict=True):
                route = self._route(view, depot)
                self.source_level[self.table.codes[depot]] = self.table.level[depot]
                self.shipments.append(
                    Shipment(
                        from_=self.table.codes[depot],
                        to=site,
                        item=item,
                        quantity=to_site[depot],
                        minutes=route.minutes,
                        distance_km=route.distance_km,
                        path=route.path,
                        edges=route.edges,
                        reason=reason,
                    )
                )
        for site, q in short.items():
            view = views[line_of[site]]
            view.ensure(INF)
            reason, detail = self._why_unmet(item, view, spare)
            self.unmet.append(Unmet(site, item, q, reason, detail))

    def _route(self, view: _SiteView, depot: int) -> Route:
        key = (view.node, depot)
        if key not in self.routes:
            self.routes[key] = self.graph.route_in(view.tree, int(self.table.node[depot]))
        return self.routes[key]

    def _why(
        self,
        item: str,
        view: _SiteView,
        tiers: np.ndarray | None,
        depots: list[int],
        spare: np.ndarray,
    ) -> list[str]:
        """Why each of these depots (one site, nearest first): the nearer depots and what kept
        each of them out. One classification of the nearer depots serves every shipment."""
        minutes = view.minutes[depots]
        cuts = minutes - 1e-9 * (1.0 + minutes)
        nearer = view.known[: np.searchsorted(view.known_minutes, cuts[-1])]
        nearer_minutes = view.known_minutes[: len(nearer)]
        self.mark[depots] = True
        others = ~self.mark[nearer]
        self.mark[depots] = False
        nearer, nearer_minutes = nearer[others], nearer_minutes[others]
        avail, send = self.available[item][nearer], self.sendable[item][nearer]
        active, left = self.active[nearer], spare[nearer]
        empty_before = np.concatenate([[0], np.cumsum(active & (avail == 0))]).tolist()
        why = np.full(len(nearer), "", dtype=object)
        why[~active & (avail > 0)] = NOT_ACTIVE
        why[active & (avail > 0) & (send == 0)] = HELD_BACK
        used = active & (send > 0) & (left == 0)
        why[used] = ALLOCATED
        why[used & (send < avail)] = DOWN_TO_MIN
        why[active & (avail > 0) & self.reserve_only[nearer]] = VILLAGE_RESERVE
        notable = np.flatnonzero(why != "")
        notable_at = notable.tolist()
        codes = self.table.codes
        texts = []
        for depot, m, cut in zip(
            depots, minutes.tolist(), np.searchsorted(nearer_minutes, cuts).tolist(), strict=True
        ):
            head, marks, named = [], why, notable[: bisect_left(notable_at, cut)]
            if tiers is not None:
                tier = int(tiers[depot])
                head = [self.tier_heads[tier]]
                spare = active[:cut] & (left[:cut] > 0)
                outside = spare & (tiers[nearer[:cut]] > tier)
                marks = why[:cut].copy()
                marks[outside] = self.tier_outside[tier]
                if self.optimised:
                    marks[spare & ~outside] = FEWER_TRIPS
                named = np.flatnonzero(marks != "")
            if not len(named):
                text = [*head, _("nearest depot with %(item)s in stock (%(minutes)s)", item=item,
                                 minutes=_min(m))]
            else:
                parts = [_("%(depot)s (%(minutes)s) %(why)s", depot=codes[nearer[k]],
                           minutes=_min(nearer_minutes[k]), why=marks[k]) for k in named[:3]]
                if len(named) > 3:
                    parts.append(_("%(count)s more", count=len(named) - 3))
                text = [*head, _("%(minutes)s; nearer ", minutes=_min(m)), join(parts, ", ")]
            empties = empty_before[cut]
            if empties:
                text.append(_("; %(count)s nearer depots had no %(item)s", count=empties,
                              item=item) if empties > 1 else
                            _("; %(count)s nearer depot had no %(item)s", count=empties,
                              item=item))
            texts.append(join(text))
        return texts

    def _why_unmet(
        self, item: str, view: _SiteView, spare: np.ndarray
    ) -> tuple[str, str]:
        minutes = view.minutes  # the whole graph was searched: inf = no open road
        left = spare > 0
        reach = np.isfinite(minutes)
        far = left & reach & (minutes > self.max_minutes)
        if far.any():
            nearest = np.flatnonzero(far)[np.argmin(minutes[far])]
            return "beyond_max_minutes", _(
                "%(quantity)s %(item)s at %(depots)s depot(s) beyond %(limit)s; nearest "
                "%(nearest)s (%(minutes)s)", quantity=int(spare[far].sum()), item=item,
                depots=int(far.sum()), limit=_min(self.max_minutes),
                nearest=self.table.codes[nearest], minutes=_min(minutes[nearest]))
        cut = left & ~reach
        if cut.any():
            told = _("%(quantity)s %(item)s left at %(depots)s depot(s) with no open road to "
                     "the site", quantity=int(spare[cut].sum()), item=item,
                     depots=int(cut.sum()))
            if not reach.any():
                told = join([told, _("; no open road reaches the site from any depot")])
            return "no_open_road", told
        in_reach = reach & (minutes <= self.max_minutes)
        avail, send = self.available[item], self.sendable[item]
        gave = in_reach & (send > 0)
        parts = [
            _("every depot in reach is out of %(item)s", item=item)
            if gave.any()
            else _("no depot in reach holds %(item)s", item=item)
        ]
        if gave.any():
            parts.append(_("%(depots)s gave all they could", depots=int(gave.sum())))
        reserve = in_reach & self.active & self.reserve_only & (avail > 0)
        if reserve.any():
            parts.append(_("%(quantity)s kept at %(depots)s village point(s) outside the "
                           "incident (outside_villages draws on them)",
                           quantity=int(avail[reserve].sum()), depots=int(reserve.sum())))
        held = in_reach & self.active & ~self.reserve_only & (avail > send)
        if held.any():
            parts.append(_("%(quantity)s held back by keep_min at %(depots)s depot(s)",
                           quantity=int((avail[held] - send[held]).sum()),
                           depots=int(held.sum())))
        idle = in_reach & ~self.active & (avail > 0)
        if idle.any():
            parts.append(_("%(quantity)s at %(depots)s depot(s) not active",
                           quantity=int(avail[idle].sum()), depots=int(idle.sum())))
        return "no_stock_in_reach", join(parts, "; ")


# Why a nearer depot did not send, said once.
NOT_ACTIVE = _("not active")
HELD_BACK = _("held back by keep_min")
ALLOCATED = _("fully allocated to other demands")
DOWN_TO_MIN = _("allocated down to its minimum")
VILLAGE_RESERVE = _("a village point outside the incident (its village's own reserve)")
FEWER_TRIPS = _("has spare, left out for fewer trips")


@lru_cache(maxsize=8192)
def _min(minutes: float) -> Message:
    if minutes < 10:
        return _("%(minutes).1f min", minutes=minutes)
    return _("%(minutes).0f min", minutes=minutes)


def _transport(
    costs: np.ndarray, cap: list[int], demand: list[int], rank: list[int]
) -> tuple[list[dict[int, int]], list[int]]:
    """Exact min-cost flow of a small transportation problem by successive shortest paths.

    `costs[d, j]`: minutes from depot d to demand line j (inf: not allowed); `rank[j]`: priority.
    Each round finds, by Bellman-Ford over the lines, the cheapest way to deliver one more unit
    to every line: from the nearest depot with spare stock, possibly passing units on through
    re-assignments (a depot shipping to line i ships to line j instead, and i is re-supplied).
    It then augments towards the line of best priority, cheapest first: the order successive
    shortest paths needs for the lexicographic cost (priority, minutes). Returns the flow per line
    {depot: quantity} and the unmet quantity per line.
    """
    n_line = len(demand)
    finite = np.isfinite(costs)
    tol = 1e-12 * (1.0 + (costs[finite].max() if finite.any() else 0.0)) * (2 * n_line + 1)
    by_cost = np.argsort(costs, axis=0, kind="stable")
    order = [by_cost[:k, j].tolist() for j, k in enumerate(finite.sum(axis=0).tolist())]
    cost = costs.tolist()
    head = [0] * n_line
    spare, rem = list(cap), list(demand)
    flow: list[dict[int, int]] = [{} for _ in range(n_line)]
    # swap[i][j]: cheapest re-assignment of a unit line i receives to line j, by depot swap_by[i][j]
    swap = [[INF] * n_line for _ in range(n_line)]
    swap_by = [[-1] * n_line for _ in range(n_line)]

    def add_swaps(i: int, d: int) -> None:
        row, w, by = cost[d], swap[i], swap_by[i]
        for j in range(n_line):
            if j != i and row[j] - row[i] < w[j]:
                w[j], by[j] = row[j] - row[i], d

    while True:
        dist, via = [INF] * n_line, [(-1, -1)] * n_line
        for j in range(n_line):
            reach, h = order[j], head[j]
            while h < len(reach) and spare[reach[h]] == 0:
                h += 1
            head[j] = h
            if h < len(reach):
                dist[j], via[j] = cost[reach[h]][j], (-1, reach[h])
        for _round in range(n_line - 1):
            changed = False
            for i in range(n_line):
                if dist[i] == INF:
                    continue
                w = swap[i]
                for j in range(n_line):
                    if dist[i] + w[j] < dist[j] - tol:
                        dist[j], via[j], changed = dist[i] + w[j], (i, swap_by[i][j]), True
            if not changed:
                break
        target = -1
        for j in range(n_line):
            if rem[j] and dist[j] < INF and (
                target < 0 or (rank[j], dist[j]) < (rank[target], dist[target])
            ):
                target = j
        if target < 0:
            return flow, rem
        steps, j = [], target
        for _step in range(n_line):
            i, d = via[j]
            steps.append((i, d, j))
            if i < 0:
                break
            j = i
        amount = rem[target]
        for i, d, _line in steps:
            amount = min(amount, spare[d] if i < 0 else flow[i][d])
        for i, d, j in steps:
            if d in flow[j]:
                flow[j][d] += amount
            else:
                flow[j][d] = amount
                add_swaps(j, d)
            if i < 0:
                spare[d] -= amount
            elif flow[i][d] > amount:
                flow[i][d] -= amount
            else:
                del flow[i][d]
                swap[i], swap_by[i] = [INF] * n_line, [-1] * n_line
                for kept in flow[i]:
                    add_swaps(i, kept)
        rem[target] -= amount


def _marginal_costs(
    cost: list[list[float]], flow: list[dict[int, int]], rem: list[int]
) -> list[float]:
    """phi(j): the most one extra unit delivered to line j could save (the dual potential of j).

    Infinite while j, or a line j can pass a unit on to, has unmet demand; otherwise the longest
    residual path: drop the costliest unit j receives, or re-assign it to another line i and go on
    from there (no positive cycle exists at an optimum, so len(lines) passes suffice).
    """
    n_line = len(rem)
    phi = [INF if rem[j] else max(cost[d][j] for d in flow[j]) for j in range(n_line)]
    for _round in range(n_line - 1):
        changed = False
        for j in range(n_line):
            if phi[j] == INF:
                continue
            for d in flow[j]:
                row = cost[d]
                for i in range(n_line):
                    if i != j and row[i] < INF and row[j] - row[i] + phi[i] > phi[j] * (1 + 1e-12):
                        phi[j], changed = row[j] - row[i] + phi[i], True
        if not changed:
            break
    return phi
