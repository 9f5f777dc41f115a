"""Time and peak memory of building the data sets: Qiandongnan for `emsupply seed`, and the
national network of 500,000 warehouses that other benchmarks load. Each case runs in a fresh
process so that its peak RSS is its own; the baseline is a process that only imports.

    .venv/bin/python bench/bench_dataset.py [CASE ...]
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from allocation_svc import geojson
from emsupply import dataset


def _qiandongnan() -> str:
    return _describe(dataset.qiandongnan())


def _national() -> str:
    return _describe(dataset.national(500_000))


def _national_with_stock() -> str:
    return _describe(dataset.national(500_000, with_stock=True))


def _geojson_round_trip() -> str:
    """What `PUT /roads` of a national network costs; the row's seconds include generation."""
    roads = dataset.national(500_000).roads
    start = time.perf_counter()
    back = geojson.roads_from_geojson(geojson.roads_geojson(roads))
    return f"{back.node_count + back.edge_count:,} features in {time.perf_counter() - start:.1f} s"


def _describe(data: dataset.DataSet) -> str:
    return (f"{len(data.warehouses):,} warehouses, {data.roads.node_count:,} nodes, "
            f"{data.roads.edge_count:,} edges, {len(data.stock):,} stock rows")


CASES = {
    "baseline": lambda: "imports only",
    "qiandongnan": _qiandongnan,
    "national": _national,
    "national+stock": _national_with_stock,
    "geojson": _geojson_round_trip,
}
TITLES = {
    "baseline": "python + numpy/scipy imports",
    "qiandongnan": "qiandongnan()",
    "national": "national(500_000)",
    "national+stock": "national(500_000, with_stock=True)",
    "geojson": "GeoJSON out and back in, national(500_000) roads",
}


def _child(case: str) -> None:
    start = time.perf_counter()
    note = CASES[case]()
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "note": note}))


def main(cases: list[str]) -> None:
    print(f"{'case':<52} {'seconds':>8} {'peak RSS MB':>12}  detail")
    for case in cases:
        out = subprocess.run([sys.executable, __file__, "--child", case], check=True,
                             capture_output=True, text=True).stdout
        row = json.loads(out)
        print(f"{TITLES[case]:<52} {row['seconds']:>8.2f} {row['peak_mb']:>12.0f}  {row['note']}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2])
    else:
        main(sys.argv[1:] or list(CASES))
