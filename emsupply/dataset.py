"""The Qiandongnan data set, generated from a seed: the four-level depot network, the road graph
that joins it, the relief items, their stock and min/target norms. The same generator builds a
national-scale network for benchmarks. Only numpy and scipy (no Flask, no database), so that
tests, benchmarks and `emsupply seed` share one source; one seed, byte-identical output within
a year (the lots' expiry dates count from the next 1st of January: `reference_date`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import NamedTuple

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import Delaunay, cKDTree

from allocation_svc.geojson import gc_paused
from allocation_svc.roadtable import CLASS_SPEED_KMH, OPEN, RoadTable

LEVELS = ("prefecture", "county", "township", "village")
STATUSES = ("active", "under_construction", "planned", "closed")
_ACTIVE, _BUILDING, _PLANNED, _CLOSED = range(4)  # indexes into STATUSES

# Qiandongnan: bounding box (west, south, east, north) and area.
QDN_BOX = (107.3, 25.3, 109.6, 27.5)
QDN_AREA_KM2 = 30_300.0

_KM_PER_DEG = 111.195
_EARTH_RADIUS_KM = 6371.0088
_CLASSES = tuple(CLASS_SPEED_KMH)
_EXPRESSWAY, _NATIONAL, _PROVINCIAL, _COUNTY, _TOWNSHIP, _VILLAGE = range(6)  # _CLASSES
# A road longer than this (straight, km) gets intermediate junction nodes, one per stretch.
_STRETCH_KM = np.array([15.0, 10.0, 6.0, 5.0, 4.0, 4.5])
# Winding factor (road length / straight line) per class: expressways tunnel and bridge through
# the mountains nearly straight, the lower the class the more a road follows the valleys.
_WINDING = np.array([[1.08, 1.2], [1.15, 1.35], [1.15, 1.35], [1.2, 1.4], [1.3, 1.6],
                     [1.35, 1.75]])
# A posted speed, where an edge has one, as a share of the class default: expressways are
# signed 80-100 km/h, lower roads slower than their class on a bad stretch.
_OWN_SPEED = np.array([[1.0, 1.25], [0.7, 1.1], [0.8, 1.1], [0.8, 1.1], [0.6, 1.1], [0.6, 1.1]])
# How far a township's (village's) road to its county seat (township) may run round by way of
# a sibling's, as a factor of the straight line; a direct road is taken otherwise.
_TOWNSHIP_DETOUR = 1.1
_VILLAGE_DETOUR = 1.5
_MEAN_DEGREE = 2.6
_ONEWAY_SHARE = 0.05  # of the extra (loop-closing) edges; tree edges stay two-way
_OWN_SPEED_SHARE = 0.05  # edges with a posted speed instead of the class default
_CLOSED_VILLAGE_SHARE = 0.004


class County(NamedTuple):
    code: str
    name: str
    name_zh: str
    lon: float  # county seat
    lat: float
    status: int
    township_weight: float  # roughly the real number of townships, to share 217 out


# The 16 county-level divisions; which depots are active, building or planned is our assumption
# (the review gives only the counts 7 / 4 / 5).
COUNTIES = (
    County("KL", "Kaili City", "凯里市", 107.98, 26.57, _ACTIVE, 18),
    County("HP", "Huangping County", "黄平县", 107.92, 26.90, _ACTIVE, 11),
    County("SB", "Shibing County", "施秉县", 108.12, 27.03, _BUILDING, 8),
    County("SS", "Sansui County", "三穗县", 108.67, 26.95, _PLANNED, 9),
    County("ZY", "Zhenyuan County", "镇远县", 108.43, 27.05, _ACTIVE, 12),
    County("CG", "Cengong County", "岑巩县", 108.82, 27.17, _PLANNED, 11),
    County("TZ", "Tianzhu County", "天柱县", 109.21, 26.91, _ACTIVE, 16),
    County("JP", "Jinping County", "锦屏县", 109.20, 26.68, _BUILDING, 15),
    County("JH", "Jianhe County", "剑河县", 108.45, 26.72, _BUILDING, 12),
    County("TJ", "Taijiang County", "台江县", 108.32, 26.67, _PLANNED, 9),
    County("LP", "Liping County", "黎平县", 109.14, 26.23, _ACTIVE, 25),
    County("RJ", "Rongjiang County", "榕江县", 108.52, 25.93, _ACTIVE, 19),
    County("CJ", "Congjiang County", "从江县", 108.91, 25.75, _ACTIVE, 21),
    County("LS", "Leishan County", "雷山县", 108.08, 26.38, _PLANNED, 9),
    County("MJ", "Majiang County", "麻江县", 107.59, 26.49, _PLANNED, 7),
    County("DZ", "Danzhai County", "丹寨县", 107.79, 26.20, _BUILDING, 7),
)
_QDN_DEPOT = ("QDN", "Qiandongnan Prefecture emergency supply reserve", "黔东南州应急物资储备库",
              107.95, 26.60)
# Chinese names as the depots are signed: "<prefecture or county>应急物资储备库" for the two top
# levels, "<place>镇(乡)应急物资储备中心" for a township, "<place>村应急物资储备点" for a village.
_DEPOT_ZH, _TOWNSHIP_ZH, _VILLAGE_ZH = "应急物资储备库", "应急物资储备中心", "应急物资储备点"
_TOWN_SHARE = 0.6  # townships that are towns (镇); the rest are rural townships (乡)
# Syllables common in the place names of Guizhou's Miao and Dong country (乌当, 朗洞, 排调, 高酿,
# 岩洞, 加榜, 党扭, 南哨, 摆贝, 九门, 八舟, 宰便, 郎德, 古州, 平寨...): a generated place name is
# one of the first row and one of the second, never the same syllable twice.
_HEADS = "乌朗排高岩榕加党南摆九八宰郎古大小新老上下龙石平者雅巴格甘翁孟归登长黄青白马兴"
_TAILS = "寨坪江溪平洞坝口头山场河塘坡冲湾桥屯堡沟岭田坳水哨门洋阳州"
_PLACES = np.array([h + t for h in _HEADS for t in _TAILS if h != t], dtype=object)
# Multipliers that step through all of _PLACES (coprime with its size), one drawn per family.
_STEPS = np.array([k for k in range(1, len(_PLACES)) if math.gcd(k, len(_PLACES)) == 1])
_NUMERALS = "一二三四五六七八九十"
_TOWNSHIP_KINDS = ("镇" + _TOWNSHIP_ZH, "乡" + _TOWNSHIP_ZH)
# The trunk roads between the depot and the county seats as Guizhou's expressways run (one county
# seat after another along each), and the national roads that close the loops between them.
_EXPRESSWAYS = (
    "QDN MJ",  # G60 west to Guiyang, by the depot on Kaili's north-west side
    "QDN HP",  # north to Huangping
    "KL SB ZY CG",  # G60 east by Chong'an (Huangping county), then to Cengong
    "ZY SS",  # G60 on to Sansui
    "KL TJ SS TZ",  # Kaili-Taijiang-Sansui-Tianzhu
    "TJ JH LP CJ",  # Kaili-Jianhe-Liping-Congjiang, Taijiang by Kaili or Jianhe
    "LP RJ CJ",  # G76 Liping-Rongjiang, and down the Duliu river to Congjiang
    "KL LS RJ",  # Kaili-Leishan-Rongjiang
    "KL DZ",
    "TZ JP",  # Jinping from Tianzhu or from Jianhe
    "JH JP",
)
_NATIONAL_ROADS = ("QDN KL", "KL MJ", "HP SB", "LS DZ", "MJ DZ", "JP LP", "CG SS")

# sku, name, name_zh, unit, category, unit_weight_kg, per_person, per_person_day,
# shelf life in days (0 = not perishable), target stock at prefecture / county / township / village,
# and the norms an incident of a type uses instead (per_person, per_person_day): a flood's life
# jackets, sandbags and pumps, a snow-and-ice response's (凝冻) heaters, de-icing salt, chains
# and a second quilt, a forest fire's extinguishers and blowers for the village fire teams.
_ITEMS = (
    ("TENT", "Relief tent (12 m2)", "救灾帐篷", "piece", "shelter", 35.0, 0.25, 0.0, 0,
     (2000, 300, 20, 0), {}),
    ("QUILT", "Quilt", "棉被", "piece", "bedding", 2.5, 1.0, 0.0, 0, (10000, 1500, 100, 10),
     {"snow_ice": (2.0, 0.0)}),
    ("COTTON-COAT", "Cotton coat", "棉大衣", "piece", "clothing", 1.8, 1.0, 0.0, 0,
     (8000, 1000, 60, 0), {}),
    ("FOLDING-BED", "Folding bed", "折叠床", "piece", "shelter", 12.0, 0.5, 0.0, 0,
     (5000, 400, 30, 0), {}),
    ("TARPAULIN", "Tarpaulin (4 x 6 m)", "篷布", "piece", "shelter", 3.0, 0.2, 0.0, 0,
     (4000, 600, 50, 5), {}),
    ("WATER-550", "Bottled water (550 ml)", "瓶装饮用水", "bottle", "food", 0.58, 0.0, 3.0, 540,
     (100000, 8000, 600, 48), {}),
    ("RICE", "Rice", "大米", "kg", "food", 1.0, 0.0, 0.5, 365, (20000, 3000, 300, 0), {}),
    ("INSTANT-FOOD", "Instant food", "方便食品", "pack", "food", 0.15, 0.0, 2.0, 270,
     (60000, 5000, 400, 30), {}),
    ("RAINCOAT", "Raincoat", "雨衣", "piece", "clothing", 0.5, 0.2, 0.0, 0, (5000, 800, 80, 10),
     {}),
    ("RUBBER-BOOTS", "Rubber boots", "雨靴", "pair", "clothing", 1.5, 0.2, 0.0, 0,
     (4000, 600, 60, 10), {}),
    ("LIFE-JACKET", "Life jacket", "救生衣", "piece", "rescue", 0.8, 0.0, 0.0, 0,
     (2000, 300, 30, 5), {"flood": (0.1, 0.0)}),
    ("SANDBAG", "Sandbag (woven, empty)", "防汛编织袋", "piece", "flood", 0.1, 0.0, 0.0, 0,
     (100000, 15000, 1000, 100), {"flood": (5.0, 0.0)}),
    ("FLASHLIGHT", "Flashlight", "手电筒", "piece", "lighting", 0.3, 0.2, 0.0, 0,
     (3000, 500, 50, 10), {}),
    ("GENERATOR", "Generator (5 kW)", "发电机", "set", "power", 85.0, 0.0, 0.0, 0,
     (100, 20, 2, 0), {}),
    ("CHAINSAW", "Chainsaw", "油锯", "set", "rescue", 7.0, 0.0, 0.0, 0, (200, 30, 3, 0), {}),
    ("WATER-PUMP", "Water pump", "抽水泵", "set", "flood", 25.0, 0.0, 0.0, 0, (150, 25, 2, 0),
     {"flood": (0.002, 0.0)}),
    ("EXTINGUISHER", "Fire extinguisher (4 kg dry powder)", "灭火器", "piece", "fire", 7.0, 0.0,
     0.0, 0, (2000, 300, 40, 6), {"forest_fire": (0.02, 0.0)}),
    ("FIRE-BLOWER", "Forest-fire blower", "风力灭火机", "set", "fire", 11.0, 0.0, 0.0, 0,
     (500, 80, 8, 2), {"forest_fire": (0.005, 0.0)}),
    ("FIRST-AID-KIT", "First-aid kit", "急救包", "box", "medical", 1.2, 0.05, 0.0, 900,
     (3000, 400, 40, 5), {}),
    ("HEATER", "Heater (2 kW, electric)", "取暖器", "piece", "heating", 4.0, 0.0, 0.0, 0,
     (2000, 300, 20, 0), {"snow_ice": (0.25, 0.0)}),
    ("DEICING-SALT", "De-icing salt", "融雪剂", "kg", "snow_ice", 1.0, 0.0, 0.0, 0,
     (50000, 6000, 400, 0), {"snow_ice": (2.0, 0.0)}),
    ("SNOW-CHAINS", "Snow chains (set of 2)", "防滑链", "set", "snow_ice", 6.0, 0.0, 0.0, 0,
     (600, 80, 6, 0), {"snow_ice": (0.02, 0.0)}),
)
_SHELF_DAYS = np.array([row[8] for row in _ITEMS])
_TARGETS = np.array([row[9] for row in _ITEMS], dtype=np.float64)  # (items, levels)
# The storm the backbone (a prefecture depot and its active county depots) is stocked for: the
# scenario's (emsupply/scenario.py), 9,690 people resettled for 3 days, by the items' norms, with
# a margin, above the depots' minimums (a plan keeps the `min` of depots outside the incident).
# The prefecture depot tops up whatever its counties' stock leaves short.
STORM_PEOPLE, STORM_DAYS = 9_690, 3
_STORM_MARGIN = 1.2
_STORM_NEED = np.ceil(STORM_PEOPLE * np.array([row[6] for row in _ITEMS])
                     + STORM_PEOPLE * np.array([row[7] for row in _ITEMS]) * STORM_DAYS)


@dataclass
class DataSet:
    """Everything `emsupply seed` loads, as plain rows (see CONTRACT.md for the fields)."""

    warehouses: list[dict]
    items: list[dict]
    stock: list[dict]
    levels: list[dict]
    roads: RoadTable


class _Layer(NamedTuple):
    """One level of the warehouse tree, as columns; `parent` indexes the layer above."""

    codes: list[str]
    names: list[str]
    names_zh: list[str]
    lon: np.ndarray
    lat: np.ndarray
    parent: np.ndarray
    status: np.ndarray


def generate(seed: int = 2023, *, villages: int = 2435, townships: int = 217,
             with_stock: bool = True) -> DataSet:
    """The 16 real counties of Qiandongnan with `townships` and `villages` spread over them."""
    if townships < 0 or villages < 0:
        raise ValueError("townships and villages must not be negative")
    if villages and not townships:
        raise ValueError("villages need at least one township")
    place = np.random.default_rng([seed, 0])
    code, name, name_zh, lon, lat = _QDN_DEPOT
    prefecture = _Layer([code], [name], [name_zh], np.array([lon]), np.array([lat]),
                        np.array([-1]), np.array([_ACTIVE], dtype=np.int8))
    counties = _Layer(
        [c.code for c in COUNTIES], [f"{c.name} emergency supply depot" for c in COUNTIES],
        [c.name_zh + _DEPOT_ZH for c in COUNTIES],
        np.array([c.lon for c in COUNTIES]), np.array([c.lat for c in COUNTIES]),
        np.zeros(len(COUNTIES), dtype=np.int64),
        np.array([c.status for c in COUNTIES], dtype=np.int8))
    per_county = _spread(townships, np.array([c.township_weight for c in COUNTIES]))
    layers = _grow_tree(place, np.random.default_rng([seed, 3]), prefecture, counties,
                        [c.name.rsplit(" ", 1)[0] for c in COUNTIES], per_county, villages,
                        QDN_AREA_KM2, QDN_BOX)
    return _assemble(seed, layers, QDN_BOX, with_stock, _corridors())


def _corridors() -> tuple[np.ndarray, ...]:
    """The trunk roads of `_EXPRESSWAYS` and `_NATIONAL_ROADS` as (from, to, class) columns of
    node indexes: node 0 is the prefecture depot, node k the seat of the k-th of `COUNTIES`."""
    index = {code: k for k, code in enumerate([_QDN_DEPOT[0], *(c.code for c in COUNTIES)])}
    rows = [(index[a], index[b], cls)
            for cls, roads in ((_EXPRESSWAY, _EXPRESSWAYS), (_NATIONAL, _NATIONAL_ROADS))
            for road in roads for a, b in pairwise(road.split())]
    return tuple(np.array(col, dtype=np.int64) for col in zip(*rows, strict=True))


def qiandongnan(seed: int = 2023) -> DataSet:
    """The data set of the contract: 1 prefecture depot, 16 counties, 217 townships, 2,435
    villages."""
    return generate(seed)


def national(warehouses: int = 500_000, seed: int = 2023, with_stock: bool = False) -> DataSet:
    """A country-sized network of exactly `warehouses` depots for benchmarks: many prefectures in
    China's proportions (about 333 : 2,843 : 38,600 : 490,000) at Qiandongnan's density."""
    if warehouses < 4:
        raise ValueError("a national network needs at least 4 warehouses (one per level)")
    n_pref = max(1, round(warehouses * 333 / 531_776))
    n_county = max(n_pref, round(warehouses * 2_843 / 531_776))
    n_town = min(max(n_county, round(warehouses * 38_600 / 531_776)),
                 warehouses - n_pref - n_county - 1)
    n_village = warehouses - n_pref - n_county - n_town
    area = warehouses * QDN_AREA_KM2 / 2_669
    height = math.sqrt(area / 1.6 / math.cos(math.radians(32.0))) / _KM_PER_DEG
    box = (105.0 - 0.8 * height, max(-80.0, 32.0 - height / 2),
           105.0 + 0.8 * height, min(80.0, 32.0 + height / 2))

    place, naming = np.random.default_rng([seed, 10]), np.random.default_rng([seed, 13])
    rows = max(1, round(math.sqrt(n_pref / 1.6)))
    cols = math.ceil(n_pref / rows)
    cell = place.choice(rows * cols, n_pref, replace=False)
    cell.sort()
    cw, ch = (box[2] - box[0]) / cols, (box[3] - box[1]) / rows
    plon = box[0] + (cell % cols + place.uniform(0.2, 0.8, n_pref)) * cw
    plat = box[1] + (cell // cols + place.uniform(0.2, 0.8, n_pref)) * ch
    width = max(3, len(str(n_pref)))
    pcodes = [f"P{k:0{width}d}" for k in range(1, n_pref + 1)]
    prefectures = _Layer(pcodes, [f"Prefecture {c} emergency supply reserve" for c in pcodes],
                         _names_zh(naming, np.array([n_pref]), ("市" + _DEPOT_ZH,)),
                         np.round(plon, 6), np.round(plat, 6), np.full(n_pref, -1),
                         np.zeros(n_pref, dtype=np.int8))
    per_pref = _spread(n_county, place.gamma(4.0, size=n_pref))
    clon, clat = _scatter(place, plon, plat, per_pref, math.sqrt(area / n_pref / math.pi), box)
    ccodes = _child_codes(pcodes, per_pref, "C")
    share = np.array([7, 4, 5]) / 16
    counties = _Layer(ccodes, [f"County {c} emergency supply depot" for c in ccodes],
                      _names_zh(naming, per_pref, ("县" + _DEPOT_ZH,)), clon, clat,
                      np.repeat(np.arange(n_pref), per_pref),
                      place.choice(3, n_county, p=share).astype(np.int8))
    per_county = _spread(n_town, place.gamma(4.0, size=n_county))
    layers = _grow_tree(place, naming, prefectures, counties, ccodes, per_county, n_village, area,
                        box)
    return _assemble(seed, layers, box, with_stock, None)


def _grow_tree(rng: np.random.Generator, naming: np.random.Generator, top: _Layer,
               counties: _Layer, labels: list[str], per_county: np.ndarray, villages: int,
               area_km2: float, box: tuple[float, ...]) -> list[_Layer]:
    """Townships clustered around their county seat, villages around their township; names
    carry the county's label (its name, or its code at national scale), Chinese names a place
    name drawn with `naming` (a generator of its own, so that places do not move with names)."""
    n_town = int(per_county.sum())
    tlon, tlat = _scatter(rng, counties.lon, counties.lat, per_county,
                          math.sqrt(area_km2 / len(counties.codes) / math.pi), box)
    tcodes = _child_codes(counties.codes, per_county, "T")
    town_county = np.repeat(np.arange(len(labels)), per_county)
    townships = _Layer(tcodes, _names(tcodes, town_county, counties.codes, labels,
                                      "township reserve centre"),
                       _names_zh(naming, per_county, _TOWNSHIP_KINDS,
                                 (_TOWN_SHARE, 1 - _TOWN_SHARE)),
                       tlon, tlat, town_county, np.zeros(n_town, dtype=np.int8))
    per_town = _spread(villages, rng.gamma(4.0, size=n_town))
    vlon, vlat = _scatter(rng, tlon, tlat, per_town,
                          math.sqrt(area_km2 / max(n_town, 1) / math.pi), box)
    vcodes = _child_codes(tcodes, per_town, "V", 3)
    status = np.where(rng.random(villages) < _CLOSED_VILLAGE_SHARE, _CLOSED, _ACTIVE)
    village_layer = _Layer(vcodes, _names(vcodes, town_county.repeat(per_town), counties.codes,
                                          labels, "village reserve point"),
                           _names_zh(naming, per_town, ("村" + _VILLAGE_ZH,)),
                           vlon, vlat, np.repeat(np.arange(n_town), per_town),
                           status.astype(np.int8))
    return [top, counties, townships, village_layer]


def _names(codes: list[str], county: np.ndarray, county_codes: list[str], labels: list[str],
           kind: str) -> list[str]:
    """`KL-T01-V003` of Kaili -> `Kaili village reserve point T01-V003`."""
    return [f"{labels[c]} {kind} {code[len(county_codes[c]) + 1:]}"
            for code, c in zip(codes, county.tolist(), strict=True)]


def _names_zh(rng: np.random.Generator, counts: np.ndarray, kinds: tuple[str, ...],
              share: tuple[float, ...] | None = None) -> list[str]:
    """Chinese names for consecutive families of `counts[i]` members (a county's townships, a
    township's villages): a place name from `_PLACES`, distinct within its family, and the kind
    of place and depot (one of `kinds`, drawn by `share`). Vectorised: member j of a family
    takes place `shuffle[(offset + j * step) % len(_PLACES)]`, its step coprime with the size,
    so the first len(_PLACES) members of a family never share one; a family larger still
    (no real network has one) numbers its later rounds: 乌寨二村."""
    size, n = len(_PLACES), int(counts.sum())
    member = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    offset = np.repeat(rng.integers(size, size=len(counts)), counts)
    step = np.repeat(rng.choice(_STEPS, len(counts)), counts)
    place = rng.permutation(size)[(offset + member * step) % size]
    kind = rng.choice(len(kinds), n, p=share) if len(kinds) > 1 else np.zeros(n, np.int64)
    full = np.add.outer(_PLACES, np.array(kinds, dtype=object)).ravel()
    names = full[place * len(kinds) + kind]
    rounds = member // size
    for i in np.flatnonzero(rounds).tolist():
        nth = int(rounds[i]) + 1
        numeral = _NUMERALS[nth - 1] if nth <= len(_NUMERALS) else str(nth)
        names[i] = _PLACES[place[i]] + numeral + kinds[kind[i]]
    return names.tolist()


def _spread(total: int, weights: np.ndarray) -> np.ndarray:
    """Share `total` out in proportion to `weights` (largest remainder), at least one each when
    there are enough to go round."""
    n = len(weights)
    base = 1 if total >= n else 0
    quota = (total - base * n) * weights / weights.sum()
    counts = np.floor(quota).astype(np.int64)
    short = total - base * n - int(counts.sum())
    counts[np.argsort(counts - quota, kind="stable")[:short]] += 1
    return counts + base


def _scatter(rng: np.random.Generator, lon: np.ndarray, lat: np.ndarray, counts: np.ndarray,
             radius_km: float, box: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """`counts[i]` points spread evenly over a disc of `radius_km` around point i, kept inside
    `box` by folding back at its edges (clipping would pile points up on the border)."""
    n = int(counts.sum())
    r = radius_km * np.sqrt(rng.random(n))
    theta = rng.uniform(0.0, 2 * math.pi, n)
    clat = np.repeat(lat, counts)
    dlat = r * np.sin(theta) / _KM_PER_DEG
    dlon = r * np.cos(theta) / (_KM_PER_DEG * np.cos(np.radians(clat)))
    return (np.round(_fold(np.repeat(lon, counts) + dlon, box[0], box[2]), 6),
            np.round(_fold(clat + dlat, box[1], box[3]), 6))


def _fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip(np.where(x < lo, 2 * lo - x, np.where(x > hi, 2 * hi - x, x)), lo, hi)


def _child_codes(parents: list[str], counts: np.ndarray, tag: str, digits: int = 2) -> list[str]:
    """`KL` -> `KL-T01`, `KL-T02`...; zero-padded wide enough for the largest family."""
    width = max(digits, len(str(int(counts.max())))) if len(counts) else digits
    return [f"{p}-{tag}{k:0{width}d}" for p, c in zip(parents, counts.tolist(), strict=True)
            for k in range(1, c + 1)]



@gc_paused()
def _assemble(seed: int, layers: list[_Layer], box: tuple[float, ...], with_stock: bool,
              trunk: tuple[np.ndarray, ...] | None) -> DataSet:
    """Flatten the layers into warehouse rows, then build roads (on the given `trunk` roads
    between the depots of the two top levels, or a generated one) and stock from their
    columns."""
    sizes = [len(layer.codes) for layer in layers]
    offsets = np.cumsum([0, *sizes[:-1]])
    level = np.repeat(np.arange(4, dtype=np.int8), sizes)
    parent = np.concatenate([np.where(layer.parent < 0, -1, layer.parent + offsets[k - 1])
                             if k else layer.parent for k, layer in enumerate(layers)])
    lon = np.concatenate([layer.lon for layer in layers])
    lat = np.concatenate([layer.lat for layer in layers])
    status = np.concatenate([layer.status for layer in layers])
    codes = [c for layer in layers for c in layer.codes]
    names = [c for layer in layers for c in layer.names]
    names_zh = [c for layer in layers for c in layer.names_zh]
    roads = _roads(np.random.default_rng([seed, 1]), lon, lat, level, parent, box, trunk)

    parent_code = [codes[p] if p >= 0 else None for p in parent.tolist()]
    warehouses = [
        {"code": c, "name": nm, "name_zh": zh, "level": LEVELS[lv], "parent": pc,
         "status": STATUSES[st], "lon": x, "lat": y, "road_node": node}
        for c, nm, zh, lv, pc, st, x, y, node in zip(
            codes, names, names_zh, level.tolist(), parent_code, status.tolist(), lon.tolist(),
            lat.tolist(), roads.node_ids[:len(codes)], strict=True)
    ]
    items = [{"sku": s, "name": n, "name_zh": zh, "unit": u, "category": cat,
              "unit_weight_kg": w, "perishable": shelf > 0, "per_person": pp,
              "per_person_day": ppd,
              "type_norms": {kind: {"per_person": a, "per_person_day": b}
                            for kind, (a, b) in by_type.items()}}
             for s, n, zh, u, cat, w, pp, ppd, shelf, _, by_type in _ITEMS]
    stock: list[dict] = []
    levels: list[dict] = []
    if with_stock:
        stock, levels = _stock(np.random.default_rng([seed, 2]), codes, level, status, parent)
    return DataSet(warehouses, items, stock, levels, roads)


def _haversine_km(lon1: np.ndarray, lat1: np.ndarray, lon2: np.ndarray,
                  lat2: np.ndarray) -> np.ndarray:
    lon1, lat1, lon2, lat2 = (np.radians(v) for v in (lon1, lat1, lon2, lat2))
    h = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * _EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(h, 1.0)))


def _roads(rng: np.random.Generator, lon: np.ndarray, lat: np.ndarray, level: np.ndarray,
           parent: np.ndarray, box: tuple[float, ...],
           trunk: tuple[np.ndarray, ...] | None) -> RoadTable:
    """Node i is warehouse i; the trunk roads between the depots of the two top levels, then each
    township and village hung on its parent, or on a sibling on the way to it, make a connected
    network that is cut into stretches at junction nodes; short extra roads close loops."""
    x = (lon - (box[0] + box[2]) / 2) * np.cos(np.radians(lat)) * _KM_PER_DEG
    y = lat * _KM_PER_DEG
    parts = [trunk if trunk is not None else _trunk(np.flatnonzero(level <= 1), level, x, y)]
    loops = []
    for lv, to_parent, to_sibling, loop_class, detour in (
            (2, _PROVINCIAL, _COUNTY, _TOWNSHIP, _TOWNSHIP_DETOUR),
            (3, _VILLAGE, _VILLAGE, _VILLAGE, _VILLAGE_DETOUR)):
        nodes = np.flatnonzero(level == lv)
        if len(nodes):
            tree, extra = _hang(rng, nodes, parent, x, y, (to_parent, to_sibling, loop_class),
                                detour)
            parts.append(tree)
            loops.append(extra)
    a, b, cls = (np.concatenate(col) for col in zip(*parts, strict=True))
    seg_a, seg_b, seg_edge, jlon, jlat = _cut(rng, a, b, cls, lon, lat, box)
    node_lon, node_lat = np.concatenate([lon, jlon]), np.concatenate([lat, jlat])
    n = len(node_lon)

    # Extra roads, enough for the mean degree of a real road network, never doubling a road.
    la, lb, lc = (np.concatenate(col) for col in zip(*loops, strict=True)) if loops else \
        (np.zeros(0, np.int64),) * 3
    key = np.minimum(la, lb) * n + np.maximum(la, lb)
    tree_key = np.minimum(a, b) * n + np.maximum(a, b)
    _, first = np.unique(key, return_index=True)
    first.sort()
    first = first[~np.isin(key[first], tree_key)]
    wanted = round(_MEAN_DEGREE / 2 * n) - len(seg_a)
    pick = np.sort(rng.choice(first, min(max(wanted, 0), len(first)), replace=False))
    edge_from = np.concatenate([seg_a, la[pick]]).astype(np.int32)
    edge_to = np.concatenate([seg_b, lb[pick]]).astype(np.int32)
    cls_all = np.concatenate([cls[seg_edge], lc[pick]])
    # Winding and posted speed are drawn per road, so that all stretches of a road share them.
    road = np.concatenate([seg_edge, len(a) + np.arange(len(pick))])
    oneway = np.concatenate([np.zeros(len(seg_a), bool),
                             rng.random(len(pick)) < _ONEWAY_SHARE])

    lo, hi = _WINDING[cls_all].T
    winding = lo + (hi - lo) * rng.random(len(a) + len(pick))[road]
    straight = _haversine_km(node_lon[edge_from], node_lat[edge_from], node_lon[edge_to],
                             node_lat[edge_to])
    length = np.maximum(np.ceil(straight * winding * 1000) / 1000, 0.01)
    default = np.array(list(CLASS_SPEED_KMH.values()))[cls_all]
    own = rng.random(len(a) + len(pick))[road] < _OWN_SPEED_SHARE
    lo, hi = _OWN_SPEED[cls_all].T
    own_speed = np.round(default * (lo + (hi - lo) * rng.random(len(a) + len(pick))[road]))
    m = len(edge_from)
    return RoadTable(
        node_ids=[f"n{i}" for i in range(n)], node_lon=node_lon, node_lat=node_lat,
        edge_ids=[f"e{i}" for i in range(m)], edge_from=edge_from, edge_to=edge_to,
        length_km=length, road_class=np.array(_CLASSES, dtype=object)[cls_all],
        speed_kmh=np.where(own, own_speed, np.nan), oneway=oneway,
        status=np.full(m, OPEN, dtype=np.int8), speed_factor=np.ones(m))


def _trunk(nodes: np.ndarray, level: np.ndarray, x: np.ndarray,
           y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Trunk roads between county seats and prefecture depots where no real ones are given: their
    Delaunay triangulation without its long slivers (a network with few detours), its minimum
    spanning tree and every road from a prefecture depot expressways, the rest national roads."""
    if len(nodes) < 4:
        a, b = np.triu_indices(len(nodes), 1)
    else:
        tri = Delaunay(np.column_stack([x[nodes], y[nodes]])).simplices
        pairs = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [0, 2]]]), axis=1)
        a, b = np.unique(pairs, axis=0).T
    d = np.hypot(x[nodes[a]] - x[nodes[b]], y[nodes[a]] - y[nodes[b]])
    k = len(nodes)
    mst = minimum_spanning_tree(coo_matrix((d + 1e-9, (a, b)), shape=(k, k))).tocoo()
    in_tree = np.isin(a * k + b, np.minimum(mst.row, mst.col) * k + np.maximum(mst.row, mst.col))
    keep = in_tree | (d <= 2.0 * np.median(d[in_tree])) if in_tree.any() else in_tree
    express = in_tree | (level[nodes[a]] == 0) | (level[nodes[b]] == 0)
    cls = np.where(express, _EXPRESSWAY, _NATIONAL)
    return nodes[a[keep]], nodes[b[keep]], cls[keep]


def _hang(rng: np.random.Generator, nodes: np.ndarray, parent: np.ndarray, x: np.ndarray,
          y: np.ndarray, classes: tuple[int, int, int],
          detour: float) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Join each node to its parent, or to the nearest sibling s on the way there: nearer to the
    parent, and with d(node, s) + detour * d(s, parent) <= detour * d(node, parent), so that by
    induction the roads from any node to its parent run at most `detour` times the straight line.
    Then offer one road to a close neighbour of each node as a loop-closing candidate. `classes`
    are those of a road to the parent, to a sibling and of a loop."""
    to_parent, to_sibling, loop_class = classes
    m = len(nodes)
    own = np.arange(m)
    family = parent[nodes]
    to_home = np.hypot(x[nodes] - x[family], y[nodes] - y[family])
    rank = np.empty(m, np.int64)
    rank[np.lexsort((own, to_home))] = own
    k = min(9, m)
    dist, near = cKDTree(np.column_stack([x[nodes], y[nodes]])).query(
        np.column_stack([x[nodes], y[nodes]]), k=k)
    dist, near = dist.reshape(m, k), near.reshape(m, k)
    on_the_way = dist + detour * to_home[near] <= detour * to_home[:, None]
    sibling = (family[near] == family[:, None]) & (rank[near] < rank[:, None]) & on_the_way
    dist_ok = np.where(sibling, dist, np.inf)
    best = dist_ok.argmin(axis=1)
    via_sibling = dist_ok[own, best] < to_home
    to = np.where(via_sibling, nodes[near[own, best]], family)
    tree = (nodes, to, np.where(via_sibling, to_sibling, to_parent))

    col = rng.integers(1, k, m) if k > 1 else np.zeros(m, np.int64)
    other = near[own, col]
    span = np.hypot(x[nodes] - x[to], y[nodes] - y[to])
    ok = (other != own) & (dist[own, col] <= 2.5 * np.median(span))
    extra = (nodes[ok], nodes[other[ok]], np.full(int(ok.sum()), loop_class))
    return tree, extra


def _cut(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, cls: np.ndarray,
         lon: np.ndarray, lat: np.ndarray, box: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """Cut every long road into stretches at new junction nodes, set a little off the straight
    line. Returns segment ends, the road of each segment and the junctions."""
    straight = _haversine_km(lon[a], lat[a], lon[b], lat[b])
    cuts = np.minimum(straight / _STRETCH_KM[cls], 30).astype(np.int64)
    base = len(lon)
    first = base + np.cumsum(cuts) - cuts  # id of each road's first junction
    road = np.repeat(np.arange(len(a)), cuts + 1)
    step = np.arange(len(road)) - np.repeat(np.cumsum(cuts + 1) - (cuts + 1), cuts + 1)
    last = step == cuts[road]
    seg_a = np.where(step == 0, a[road], first[road] + step - 1)
    seg_b = np.where(last, b[road], first[road] + step)

    j_road = np.repeat(np.arange(len(a)), cuts)
    t = (seg_b[~last] - first[j_road] + 1) / (cuts[j_road] + 1)
    dlon, dlat = lon[b] - lon[a], lat[b] - lat[a]
    coslat = np.cos(np.radians(lat[a]))
    # Off the line by a share of one stretch, not of the whole road: the winding factor makes a
    # road longer than its line, the junctions must not zigzag it longer still.
    side = np.clip(rng.normal(0.0, 0.1, len(j_road)), -0.25, 0.25) / (cuts[j_road] + 1)
    jlon = lon[a][j_road] + t * dlon[j_road] - side * dlat[j_road] / coslat[j_road]
    jlat = lat[a][j_road] + t * dlat[j_road] + side * dlon[j_road] * coslat[j_road]
    return (seg_a, seg_b, road, np.round(_fold(jlon, box[0], box[2]), 6),
            np.round(_fold(jlat, box[1], box[3]), 6))


def reference_date(today: date | None = None) -> str:
    """What the data set's expiry dates count from: the 1st of January after today. Expired
    stock is no relief (it is never planned or issued), so the seed's lots must lie ahead; the
    data set changes once a year, not with every run."""
    return f"{(today or date.today()).year + 1}-01-01"


def _stock(rng: np.random.Generator, codes: list[str], level: np.ndarray, status: np.ndarray,
           parent: np.ndarray) -> tuple[list[dict], list[dict]]:
    """Stock and min/target norms of the active depots: the prefecture holds every item in bulk,
    counties nearly all, townships most, village points a few; about one line in five starts
    below its minimum so that replenishment has work to do. Each prefecture depot and its
    active counties together hold at least `_STORM_MARGIN` times `_STORM_NEED` above their
    minimums."""
    active = np.flatnonzero(status == _ACTIVE)
    lv = level[active]
    base = _TARGETS[:, lv].T
    roll = rng.random(base.shape)
    hold = base > 0
    hold[lv == 1] &= roll[lv == 1] < 0.95
    hold[lv == 2] &= roll[lv == 2] < 0.75
    village = lv == 3
    score = np.where(hold[village], roll[village], np.inf)
    rank = np.argsort(np.argsort(score, axis=1), axis=1)
    hold[village] &= rank < rng.integers(3, 7, int(village.sum()))[:, None]

    row, item = np.nonzero(hold)
    n = len(row)
    target = np.maximum(1, np.round(base[row, item] * rng.uniform(0.7, 1.3, n))).astype(np.int64)
    minimum = np.maximum(1, np.round(target * rng.uniform(0.4, 0.6, n))).astype(np.int64)
    short = (rng.random(n) < 0.2) & (lv[row] > 0)  # the prefecture has no one above to refill it
    quantity = np.where(short, np.floor(minimum * rng.uniform(0.0, 0.95, n)),
                        np.round(target * rng.uniform(0.75, 1.2, n))).astype(np.int64)
    # The storm reserve: each prefecture depot tops up what it and its active counties lack.
    top = lv[row] == 0
    up = np.flatnonzero(lv[row] <= 1)
    prefecture = np.where(top[up], active[row[up]], parent[active[row[up]]])
    prefectures, which = np.unique(prefecture, return_inverse=True)
    in_store = np.zeros((len(prefectures), len(_ITEMS)), np.int64)
    np.add.at(in_store, (which, item[up]), np.maximum(quantity[up] - minimum[up], 0))
    lacking = np.ceil(_STORM_MARGIN * _STORM_NEED).astype(np.int64) - in_store
    quantity[top] += np.maximum(lacking[np.searchsorted(prefectures, active[row[top]]), item[top]],
                                0)
    wh = [codes[i] for i in active[row].tolist()]
    skus = [r[0] for r in _ITEMS]
    levels = [{"warehouse": w, "item": skus[i], "min": lo, "target": hi}
              for w, i, lo, hi in zip(wh, item.tolist(), minimum.tolist(), target.tolist(),
                                      strict=True)]

    # Perishables come in 1-3 lots (never more than units), each with its own expiry date.
    held = np.flatnonzero(quantity > 0)
    shelf = _SHELF_DAYS[item[held]]
    lots = np.where(shelf > 0, np.minimum(rng.integers(1, 4, len(held)), quantity[held]), 1)
    head = np.cumsum(lots) - lots  # first lot row of each stock line
    line = np.repeat(held, lots)
    start, count = head.repeat(lots), lots.repeat(lots)
    k = np.arange(len(line)) - start
    # A random split, at least one unit a lot, the rounding left over going to the last lot.
    weight = rng.uniform(0.5, 1.5, len(line))
    share = weight / np.add.reduceat(weight, head).repeat(lots)
    lot_qty = 1 + np.floor((quantity[line] - count) * share).astype(np.int64)
    lot_qty[k == count - 1] += quantity[held] - np.add.reduceat(lot_qty, head)
    # Expiry dates rise lot by lot after reference_date(), over about the item's shelf life.
    days = np.where(k == 0, rng.uniform(0.05, 0.5, len(line)), rng.uniform(0.1, 0.33, len(line)))
    days = np.round(days * shelf.repeat(lots)).astype(np.int64) + 1
    cum = np.cumsum(days)
    offset = cum - cum[start] + days[start]
    # One string per distinct date, shared by every row that has it (millions at national scale).
    dates, which = np.unique(offset, return_inverse=True)
    iso = (np.datetime64(reference_date()) + dates).astype(str).tolist()
    lot_names = [f"L{day.replace('-', '')}" for day in iso]
    perishable = (shelf.repeat(lots) > 0).tolist()
    stock = [{"warehouse": wh[r], "item": skus[i], "quantity": qty,
              "lot": lot_names[day] if p else "", "expires_on": iso[day] if p else None}
             for r, i, qty, day, p in zip(line.tolist(), item[line].tolist(), lot_qty.tolist(),
                                          which.tolist(), perishable, strict=True)]
    return stock, levels
