"""`emsupply import` and `emsupply export` through the suite's API (in this process, on a
temporary data directory): a file with bad rows is reported row by row, by line number, and
nothing is written unless --skip-bad; what is written makes the suite hold the file, so the
same file again changes nothing; an export imports back unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from emsupply.cli import main

WAREHOUSES = """code,name,name_zh,level,parent,status,lon,lat,road_node
QDN,Prefecture reserve,黔东南州应急物资储备库,prefecture,,active,107.95,26.6,n1
KL,Kaili depot,凯里市应急物资储备库,county,QDN,active,107.98,26.57,n2
KL-T01,Kaili township 1,,township,KL,active,107.99,26.58,n3
KL-T01-V001,Village 1,,village,KL-T01,active,108.0,26.59,n4
"""
ITEMS = """sku,name,name_zh,unit,category,unit_weight_kg,perishable,per_person,per_person_day,\
type_norms
TENT,Relief tent,救灾帐篷,piece,shelter,35.0,false,0.25,0.0,flood=0.3/0; snow_ice=0.3/0
WATER,Bottled water,瓶装饮用水,bottle,food,0.58,true,0.0,3.0,
"""


@pytest.fixture
def cli(tmp_path):
    """`emsupply ...` in this process, on a fresh data directory, with none of the caller's
    EMSUPPLY_* settings."""
    runner = CliRunner()
    data_dir = tmp_path / "var"
    unset = {key: None for key in os.environ if key.startswith("EMSUPPLY_")}

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(main, [*args, "--data-dir", str(data_dir)], env=unset,
                               catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result
    invoke.data_dir = data_dir
    return invoke


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def base(cli, tmp_path) -> None:
    cli("import", "items", write(tmp_path, "items.csv", ITEMS))
    cli("import", "warehouses", write(tmp_path, "warehouses.csv", WAREHOUSES))


def test_a_file_with_bad_rows_is_reported_line_by_line_and_nothing_is_written(cli, tmp_path):
    cli("import", "items", write(tmp_path, "items.csv", ITEMS))
    bad = write(tmp_path, "bad.csv", WAREHOUSES + (
        "KL-T02,Township 2,,township,KL,active,east,26.5,n5\n"        # line 6: lon
        "KL-T03,Township 3,,province,KL,active,,,\n"                 # line 7: level
        "KL,Kaili again,,county,QDN,active,,,\n"                     # line 8: duplicate
        "KL-T04,Township 4,,township,KL-T01-V001,active,,,\n"        # line 9: parent level
        "KL-T05,,,township,KL,active,,,\n"                           # line 10: name
        "\n"                                                          # line 11: blank
        "KL-T06,\"Township, six\",,township,KL,active,1,2\n"          # line 12: 8 values
        "KL-T07-V001,Orphan,,village,KL-T07,active,,,\n"))           # line 13: no parent
    result = cli("import", "warehouses", bad, ok=False)
    assert result.exit_code == 1
    report = result.stderr
    assert "7 bad rows of 11" in report
    for expected in ("line 6: lon: 'east' is not a number",
                     "line 7: level: Must be one of",
                     "line 8: code: KL is also on line 3",
                     "line 9: parent: KL-T01-V001 is a village; a township's parent is a county",
                     "line 10: name: required",
                     "line 12: 8 values for 9 columns",
                     "line 13: parent: no warehouse KL-T07 in the file or the suite",
                     "nothing was written (--skip-bad writes the good rows)"):
        assert expected in report, report
    exported = cli("export", "warehouses").stdout
    assert exported.splitlines() == [WAREHOUSES.splitlines()[0]]

    skipped = cli("import", "warehouses", bad, "--skip-bad")
    assert "4 rows written, 0 unchanged, 7 bad skipped" in skipped.stdout
    assert "line 6: lon" in skipped.stderr  # still reported
    again = cli("import", "warehouses", bad, "--skip-bad")
    assert "0 rows written, 4 unchanged" in again.stdout


def test_a_cascade_of_bad_rows_is_found_when_skipping(cli, tmp_path):
    cli("import", "items", write(tmp_path, "items.csv", ITEMS))
    text = WAREHOUSES.replace("KL-T01,Kaili township 1,,township,KL,active,107.99",
                              "KL-T01,Kaili township 1,,township,KL,active,999")
    result = cli("import", "warehouses", write(tmp_path, "w.csv", text), "--skip-bad")
    assert "line 4: lon:" in result.stderr
    assert "line 5: parent: no warehouse KL-T01 in the file or the suite" in result.stderr
    assert "2 rows written, 0 unchanged, 2 bad skipped" in result.stdout


def test_warehouses_and_items_round_trip_and_changes_are_patched(cli, tmp_path):
    base(cli, tmp_path)
    assert "0 rows written, 2 unchanged" in cli(
        "import", "items", write(tmp_path, "items.csv", ITEMS)).stdout
    exported = cli("export", "warehouses").stdout
    assert exported == WAREHOUSES
    assert "0 rows written, 4 unchanged" in cli(
        "import", "warehouses", write(tmp_path, "again.csv", exported)).stdout
    renamed = exported.replace("Kaili depot", "Kaili City depot")
    result = cli("import", "warehouses", write(tmp_path, "renamed.csv", renamed))
    assert "1 rows written, 3 unchanged" in result.stdout
    assert "Kaili City depot" in cli("export", "warehouses").stdout

    items = cli("export", "items", "-o", str(tmp_path / "out.csv"))
    assert "exported 2 rows of items" in items.stderr
    assert (tmp_path / "out.csv").read_text(encoding="utf-8") == ITEMS
    changed = ITEMS.replace("0.25", "0.5")
    refused = cli("import", "items", write(tmp_path, "changed.csv", changed), ok=False)
    assert "line 2: per_person: item TENT exists with other values" in refused.stderr
    colder = ITEMS.replace("snow_ice=0.3/0", "snow_ice=0.5")
    refused = cli("import", "items", write(tmp_path, "colder.csv", colder), ok=False)
    assert "line 2: type_norms: item TENT exists with other values" in refused.stderr
    odd = ITEMS.replace("TENT,", "COT,").replace("snow_ice=0.3/0", "blizzard=1")
    refused = cli("import", "items", write(tmp_path, "odd.csv", odd), ok=False)
    assert "line 2: type_norms.blizzard.key: Must be one of" in refused.stderr
    odd = ITEMS.replace("TENT,", "COT,").replace("snow_ice=0.3/0", "snow_ice")
    refused = cli("import", "items", write(tmp_path, "odd.csv", odd), ok=False)
    assert "line 2: type_norms: 'flood=0.3/0; snow_ice' is not norms by incident type" in \
        refused.stderr


def test_a_gb18030_file_from_excel_is_read_and_says_so(cli, tmp_path):
    cli("import", "items", write(tmp_path, "items.csv", ITEMS))
    path = tmp_path / "gbk.csv"
    path.write_bytes(WAREHOUSES.replace("\n", "\r\n").encode("gb18030"))
    result = cli("import", "warehouses", str(path))
    assert "(read as GB18030): 4 rows written" in result.stdout
    assert cli("export", "warehouses").stdout == WAREHOUSES


def test_levels_and_stock(cli, tmp_path):
    base(cli, tmp_path)
    levels = ("warehouse,item,min,target\n"
              "KL,TENT,10,30\n"
              "KL-T01,WATER,100,200\n"
              "KL-T01,TENT,5,2\n"            # line 4: target below min
              "KL-T09,TENT,1,2\n"            # line 5: no such warehouse
              "KL,ROPE,1,2\n")               # line 6: no such item
    bad = cli("import", "levels", write(tmp_path, "levels.csv", levels), ok=False)
    for expected in ("line 4: target: 2 is below min 5", "line 5: warehouse: no warehouse KL-T09",
                     "line 6: item: no item ROPE"):
        assert expected in bad.stderr
    good = "".join(levels.splitlines(keepends=True)[:3])
    assert "2 rows written" in cli("import", "levels", write(tmp_path, "l.csv", good)).stdout
    assert cli("export", "levels").stdout == (
        "warehouse,item,min,target\nKL,TENT,10,30\nKL-T01,WATER,100,200\n")
    assert "0 rows written, 2 unchanged" in cli("import", "levels",
                                                 write(tmp_path, "l.csv", good)).stdout

    stock = ("warehouse,item,quantity,lot,expires_on\n"
             "KL,TENT,40,,\n"
             "KL-T01,WATER,120,L1,2027-01-31\n"
             "KL-T01,WATER,80,L2,2027-06-30\n"
             "KL-T01-V001,WATER,5,,\n"        # line 5: perishable without expiry
             "KL,TENT,-3,,\n"                 # line 6: negative
             "KL,TENT,1,,2027-01-01\n")       # line 7: not perishable
    bad = cli("import", "stock", write(tmp_path, "stock.csv", stock), ok=False)
    for expected in ("line 5: expires_on: WATER is perishable", "line 6: quantity: must not be "
                     "negative", "line 7: expires_on: TENT is not perishable"):
        assert expected in bad.stderr, bad.stderr
    good = "".join(stock.splitlines(keepends=True)[:4])
    assert "3 rows written" in cli("import", "stock", write(tmp_path, "s.csv", good)).stdout
    exported = cli("export", "stock").stdout
    assert exported == good
    assert "0 rows written, 3 unchanged" in cli("import", "stock",
                                                 write(tmp_path, "s.csv", exported)).stdout
    counted = good.replace("KL,TENT,40", "KL,TENT,35")  # a count: the balance is adjusted
    assert "1 rows written, 2 unchanged" in cli(
        "import", "stock", write(tmp_path, "c.csv", counted)).stdout
    assert "KL,TENT,35,," in cli("export", "stock").stdout


def test_roads_geojson_reports_every_bad_feature(cli, tmp_path):
    base(cli, tmp_path)
    nodes = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [108 + i / 10, 26]},
              "properties": {"id": f"n{i}"}} for i in range(1, 5)]

    def edge(eid, a, b, cls="county", length=3.0):
        return {"type": "Feature", "geometry": {"type": "LineString",
                                                "coordinates": [[108, 26], [108.1, 26]]},
                "properties": {"id": eid, "from": a, "to": b, "length_km": length,
                               "road_class": cls}}
    doc = {"type": "FeatureCollection", "features": [
        *nodes, edge("e1", "n1", "n2"), edge("e2", "n2", "n9"), edge("e3", "n3", "n4", "lane"),
        edge("e4", "n2", "n3", length=-1), edge("e5", "n3", "n4")]}
    path = write(tmp_path, "roads.geojson", json.dumps(doc))
    bad = cli("import", "roads", path, ok=False)
    for expected in ("feature 5: properties.to: unknown node 'n9'",
                     "feature 6: properties.road_class: must be one of",
                     "feature 7: properties.length_km: must be a number >= 0",
                     "3 bad features of 9", "nothing was written"):
        assert expected in bad.stderr, bad.stderr
    assert "6 features written" in cli("import", "roads", path, "--skip-bad").stdout
    exported = json.loads(cli("export", "roads").stdout)
    assert sorted(f["properties"]["id"] for f in exported["features"]) == [
        "e1", "e5", "n1", "n2", "n3", "n4"]

