"""Plans driven, not teleported: vehicles by depot level, trips packed from shipments, and the
mixed-integer program that trades unit-minutes against trips.

Pure (no I/O). The flow solver (`solver`) first finds, per item, how much each demand line gets
and from which candidate depots, exactly. `optimise` then re-chooses the depots of every line,
all items together, so that what each line gets stays the same, no more is drawn from the
outer tiers than the flow drew (the sourcing rule is kept lexicographically), and

    sum(quantity x minutes) + trip_cost x trips

is the least, a trip being one vehicle of the depot's class from one depot to one site, carrying
at most its capacity in kg. HiGHS (which scipy ships) solves it; it answers a lower bound beside
the plan, and the gap. Beyond `exact_limit` variables the flow's own choice is packed as it is,
and the bound is the flow's minutes plus the fewest trips the sites' weights need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from allocation_svc.vocabulary import COUNTY, PREFECTURE, TOWNSHIP, VILLAGE


@dataclass(frozen=True)
class Vehicle:
    name: str
    capacity_kg: float


# The source document's depots send: 10 t lorries from the prefecture and county depots, 2 t vans
# from township centres, 1 t pickups from village points.
DEFAULT_VEHICLES: Mapping[str, Vehicle] = {
    PREFECTURE: Vehicle("lorry", 10_000.0), COUNTY: Vehicle("lorry", 10_000.0),
    TOWNSHIP: Vehicle("van", 2_000.0), VILLAGE: Vehicle("pickup", 1_000.0),
}
# What one more trip is worth in unit-minutes: 20 lorries' worth of a small load an hour away.
DEFAULT_TRIP_COST = 3_000.0


@dataclass(frozen=True)
class Driving:
    """How a plan's shipments become trips, and how hard the solver tries to make few."""

    vehicles: Mapping[str, Vehicle] = field(default_factory=lambda: dict(DEFAULT_VEHICLES))
    trip_cost: float = DEFAULT_TRIP_COST
    optimise: bool = True  # False: pack the flow's shipments as they are
    exact_limit: int = 40_000  # the most variables handed to the MILP
    time_limit_s: float = 2.0
    rel_gap: float = 5e-3  # HiGHS stops when the plan is within this of its bound

    def vehicle(self, level: str | None) -> Vehicle:
        return self.vehicles.get(level or VILLAGE) or DEFAULT_VEHICLES[VILLAGE]


@dataclass(frozen=True)
class Trip:
    """One vehicle from one depot to one site with what it carries."""

    from_: str
    to: str
    vehicle: str
    capacity_kg: float
    lines: list[tuple[str, int]]  # (item, quantity)
    weight_kg: float
    minutes: float
    distance_km: float
    path: list[str]


@dataclass(frozen=True)
class Load:
    """What `pack` loads: a quantity of an item from a depot to a site, by its route."""

    from_: str
    to: str
    item: str
    quantity: int
    minutes: float
    distance_km: float
    path: Sequence[str]


@dataclass
class ItemProblem:
    """One item's restricted transportation problem, as the flow solver left it."""

    item: str
    weight_kg: float  # per unit; 0 when unknown (it still needs a vehicle)
    sites: list[str]  # the site of each demand line
    met: list[int]  # what each line gets
    cand: np.ndarray  # depot indexes of the candidates
    cost: np.ndarray  # minutes (candidate, line); inf: not allowed
    tier: np.ndarray | None  # tier (candidate, line), or None for an untiered policy
    cap: np.ndarray  # what each candidate may send
    flow: list[dict[int, int]]  # per line {candidate position: quantity}


@dataclass
class Optimised:
    flows: list[list[dict[int, int]]]  # per problem, per line
    bound: float  # lower bound of minutes + trip_cost x trips
    exact: bool  # solved to optimality (within HiGHS's relative gap)
    variables: int


def optimise(problems: Sequence[ItemProblem], capacity_kg: np.ndarray,
             driving: Driving) -> Optimised | None:
    """The flows of least minutes + trips with each line's quantity and each item's tier total
    kept; None when the model is over `exact_limit` or HiGHS finds no plan in time.
    `capacity_kg[d]`: the capacity of depot d's vehicle."""
    var_item, var_line, var_cand, var_cost = [], [], [], []
    for p, prob in enumerate(problems):
        c, j = np.nonzero(np.isfinite(prob.cost) & (prob.cap[:, None] > 0))
        keep = np.asarray(prob.met)[j] > 0
        c, j = c[keep], j[keep]
        var_item.append(np.full(len(c), p))
        var_line.append(j)
        var_cand.append(c)
        var_cost.append(prob.cost[c, j])
    if not sum(len(v) for v in var_item):  # nothing to send
        return Optimised([[{} for _ in prob.met] for prob in problems], 0.0, True, 0)
    item_of, line_of = np.concatenate(var_item), np.concatenate(var_line)
    cand_of, minutes = np.concatenate(var_cand), np.concatenate(var_cost)
    n_x = len(item_of)
    depot_of = np.empty(n_x, dtype=np.int64)
    site_of = np.empty(n_x, dtype=object)
    weight_of = np.empty(n_x)
    for p, prob in enumerate(problems):
        mine = item_of == p
        depot_of[mine] = prob.cand[cand_of[mine]]
        site_of[mine] = np.asarray(prob.sites, dtype=object)[line_of[mine]]
        weight_of[mine] = prob.weight_kg
    pairs: dict[tuple[int, str], int] = {}
    pair_of = np.array([pairs.setdefault((d, s), len(pairs))
                        for d, s in zip(depot_of.tolist(), site_of.tolist(), strict=True)])
    n_y = len(pairs)
    if n_x + n_y > driving.exact_limit:
        return None

    rows, cols, vals, lo, hi = [], [], [], [], []

    def row(columns: np.ndarray, values: np.ndarray, low: float, high: float) -> None:
        rows.append(np.full(len(columns), len(lo)))
        cols.append(columns)
        vals.append(values)
        lo.append(low)
        hi.append(high)

    x = np.arange(n_x)
    line_key = item_of * (1 + int(line_of.max())) + line_of
    for key in np.unique(line_key):  # each line gets what the flow gave it
        at = x[line_key == key]
        met = problems[item_of[at[0]]].met[line_of[at[0]]]
        row(at, np.ones(len(at)), met, met)
    cand_key = item_of * (1 + int(cand_of.max())) + cand_of
    for key in np.unique(cand_key):  # no depot sends more than it may
        at = x[cand_key == key]
        row(at, np.ones(len(at)), -np.inf, float(problems[item_of[at[0]]].cap[cand_of[at[0]]]))
    for p, prob in enumerate(problems):  # no more from the outer tiers than the flow drew
        if prob.tier is None:
            continue
        at = x[item_of == p]
        drawn = sum(prob.tier[c, j] * q for j, f in enumerate(prob.flow) for c, q in f.items())
        row(at, prob.tier[cand_of[at], line_of[at]], -np.inf, float(drawn))
    depot_of_pair = np.empty(n_y, dtype=np.int64)
    for (d, _), k in pairs.items():
        depot_of_pair[k] = d
    for k in range(n_y):  # a pair's load fits its trips
        at = x[pair_of == k]
        heavy = at[weight_of[at] > 0]
        cap = float(capacity_kg[depot_of_pair[k]])
        row(np.append(heavy, n_x + k), np.append(weight_of[heavy], -cap), -np.inf, 0.0)
        for v in at[weight_of[at] <= 0]:  # weightless (unknown) goods still need a vehicle
            most = problems[item_of[v]].met[line_of[v]]
            row(np.array([v, n_x + k]), np.array([1.0, -float(most)]), -np.inf, 0.0)

    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                   shape=(len(lo), n_x + n_y)).tocsr()
    upper_x = np.array([min(problems[i].met[j], problems[i].cap[c])
                        for i, j, c in zip(item_of.tolist(), line_of.tolist(), cand_of.tolist(),
                                           strict=True)], dtype=float)
    objective = np.concatenate([minutes, np.full(n_y, float(driving.trip_cost))])
    result = milp(objective, integrality=np.ones(n_x + n_y),
                  bounds=Bounds(np.zeros(n_x + n_y), np.concatenate([upper_x,
                                                                     np.full(n_y, np.inf)])),
                  constraints=LinearConstraint(a, lo, hi),
                  options={"time_limit": driving.time_limit_s, "mip_rel_gap": driving.rel_gap,
                           "disp": False})
    if result.x is None:
        return None
    chosen = np.rint(result.x[:n_x]).astype(np.int64)
    flows: list[list[dict[int, int]]] = [[{} for _ in prob.met] for prob in problems]
    for v in np.flatnonzero(chosen > 0).tolist():
        flows[item_of[v]][line_of[v]][int(cand_of[v])] = int(chosen[v])
    for p, prob in enumerate(problems):  # rounding must not have lost a unit
        if [sum(f.values()) for f in flows[p]] != list(prob.met):
            return None
    bound = getattr(result, "mip_dual_bound", None)
    if bound is None or not math.isfinite(bound):
        bound = result.fun
    return Optimised(flows, float(bound), result.status == 0, n_x + n_y)


def pack(shipments: Sequence[Load], vehicle_of: Callable[[str], Vehicle],
         weight_kg: Mapping[str, float]) -> list[Trip]:
    """The trips that carry `shipments` (a Load, or anything with its attributes such as the
    solver's Shipment): per depot and site, the fewest vehicles first-fit by decreasing unit
    weight can load; a unit heavier than the vehicle goes alone."""
    groups: dict[tuple[str, str], list] = {}
    for s in shipments:
        groups.setdefault((s.from_, s.to), []).append(s)
    trips = []
    for (source, site), lines in groups.items():
        vehicle = vehicle_of(source)
        cap = vehicle.capacity_kg
        loads: list[list] = []  # [weight, {item: quantity}]
        by_item: dict[str, int] = {}
        for s in lines:
            by_item[s.item] = by_item.get(s.item, 0) + s.quantity
        for item, quantity in sorted(by_item.items(), key=lambda kv: (-weight_kg.get(kv[0], 0.0),
                                                                        kv[0])):
            w = max(weight_kg.get(item, 0.0) or 0.0, 0.0)
            left = quantity
            for load in loads:
                if not left:
                    break
                fits = left if w == 0 else min(left, int((cap - load[0]) / w + 1e-9))
                if fits > 0:
                    load[0] += fits * w
                    load[1][item] = load[1].get(item, 0) + fits
                    left -= fits
            while left:
                fits = left if w == 0 else max(1, min(left, int(cap / w + 1e-9)))
                loads.append([fits * w, {item: fits}])
                left -= fits
        first = lines[0]
        for weight, carried in loads:
            trips.append(Trip(from_=source, to=site, vehicle=vehicle.name, capacity_kg=cap,
                              lines=sorted(carried.items()), weight_kg=round(weight, 3),
                              minutes=first.minutes, distance_km=first.distance_km,
                              path=list(first.path)))
    return trips


def fewest_trips(weight_by_site: Mapping[str, float], largest_kg: float) -> int:
    """A lower bound of the trips any plan needs: each site's weight in the largest vehicles."""
    return sum(max(1, math.ceil(w / largest_kg - 1e-9)) for w in weight_by_site.values())
