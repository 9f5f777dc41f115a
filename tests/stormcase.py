"""The seed's storm as the solver sees it, straight from the Qiandongnan data set (no services):
three Rongjiang townships, 4,260, 3,180 and 2,250 people to resettle for 3 days, demands from the
items' norms, every depot with its stock and `min`. The scenario (`emsupply scenario storm`) picks
the same townships through the API."""

from __future__ import annotations

import math

from allocation_svc.plans import derived_demands
from allocation_svc.roadgraph import RoadGraph
from allocation_svc.solver import Demand, Depot, DepotTable
from emsupply import dataset
from emsupply.scenario import DAYS, POPULATION, PREFERRED_COUNTY


def storm_townships(data: dataset.DataSet, county: str = PREFERRED_COUNTY) -> list[dict]:
    """As the scenario's `_place`: the county's township nearest its seat, and the two nearest
    to that one."""
    seat = next(w for w in data.warehouses if w["code"] == county)
    towns = [w for w in data.warehouses if w["level"] == "township" and w["parent"] == county
             and w["status"] == "active"]

    def far(a: dict, b: dict) -> float:
        return (a["lon"] - b["lon"]) ** 2 + (a["lat"] - b["lat"]) ** 2

    first = min(towns, key=lambda t: (far(t, seat), t["code"]))
    rest = sorted((t for t in towns if t is not first), key=lambda t: (far(t, first), t["code"]))
    return [first, *rest[:2]]


def storm(data: dataset.DataSet) -> tuple[RoadGraph, DepotTable, list[Demand]]:
    graph = RoadGraph(data.roads, 1)
    towns = storm_townships(data)
    affected = {t["code"] for t in towns}
    parent = {w["code"]: w["parent"] for w in data.warehouses}
    level = {w["code"]: w["level"] for w in data.warehouses}

    def township_of(code: str) -> str | None:
        while code and level[code] not in ("township", "county", "prefecture"):
            code = parent[code]
        return code if code and level[code] == "township" else None

    def county_of(code: str) -> str | None:
        while code and level[code] != "county":
            code = parent[code]
        return code

    stock: dict[str, dict[str, int]] = {}
    for row in data.stock:
        per = stock.setdefault(row["warehouse"], {})
        per[row["item"]] = per.get(row["item"], 0) + row["quantity"]
    minimum: dict[str, dict[str, int]] = {}
    for row in data.levels:
        minimum.setdefault(row["warehouse"], {})[row["item"]] = row["min"]
    depots = [Depot(code=w["code"], node=w["road_node"], level=w["level"],
                    township=township_of(w["code"]), county=county_of(w["code"]),
                    status=w["status"], stock=stock.get(w["code"], {}),
                    minimum=minimum.get(w["code"], {}),
                    in_incident=township_of(w["code"]) in affected)
              for w in data.warehouses]
    sites = [{"id": t["code"], "population": people} for t, people in
             zip(towns, POPULATION, strict=True)]
    weight = {i["sku"]: i["unit_weight_kg"] for i in data.items}
    demands = [Demand(site=d["site"], node=next(t["road_node"] for t in towns
                                                if t["code"] == d["site"]),
                      item=d["item"], quantity=d["quantity"], priority=d["priority"],
                      township=d["site"], county=PREFERRED_COUNTY,
                      unit_weight_kg=weight[d["item"]])
               for d in derived_demands(sites, data.items, DAYS)]
    assert math.isclose(sum(POPULATION), dataset.STORM_PEOPLE)
    table = DepotTable.from_depots(graph, depots, sorted({d.item for d in demands}))
    return graph, table, demands
