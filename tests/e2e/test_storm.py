"""The newcomer's path, end to end: `emsupply up` on a fresh data directory, `emsupply seed`
while it runs, `emsupply scenario storm` against it, then the outcome checked through the API
with an admin token of its own: the stock that left the depots is the stock the plan ships, no
balance is negative, the road the landslide closed is on no route; Ctrl-C stops everything.

The data set is Qiandongnan's with 300 villages instead of 2,435 (every county and township,
so the same story), to keep the test short; EMSUPPLY_E2E_FULL=1 runs it on the whole set."""

from __future__ import annotations

import os
import re

import pytest
from e2e_helpers import Up, processes_of, run, wait_gone

pytestmark = pytest.mark.e2e
API = "/api/v1"


def pages(session, url: str) -> list[dict]:
    rows, cursor = [], None
    joiner = "&" if "?" in url else "?"
    while True:
        answer = session.get(f"{url}{joiner}limit=1000" + (f"&cursor={cursor}" if cursor
                                                            else ""), timeout=30)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        rows.extend(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return rows


def test_up_seed_storm_and_its_outcome_through_the_api(tmp_path):
    data_dir = tmp_path / "var"
    suite = Up(data_dir)
    try:
        suite.wait_ready()
        assert (data_dir / "suite.json").exists()
        # Before the seed, the story stops at its first step, says which, and exits 1.
        empty = run("scenario", "storm", "--data-dir", str(data_dir), "--lang", "en",
                    check=False)
        assert empty.returncode == 1, empty.stdout + empty.stderr
        assert empty.stderr.strip() == (
            "scenario failed: step 'Early warning: a rainstorm is forecast for three townships; "
            "stock moves towards them beforehand' "
            "failed: no active county depot with three townships: seed the suite first "
            "(emsupply seed qiandongnan)")

        smaller = [] if os.environ.get("EMSUPPLY_E2E_FULL") else ["--villages", "300"]
        seeded = run("seed", "qiandongnan", "--data-dir", str(data_dir), *smaller)
        assert "seeded qiandongnan" in seeded.stdout

        story = run("scenario", "storm", "--data-dir", str(data_dir), "--lang", "en",
                    timeout=240)
        out = story.stdout
        for step in ("[1/10] Early warning", "[2/10] First report", "[3/10] Full report",
                     "[4/10] Plan", "[5/10] A landslide", "[6/10] Re-plan", "[7/10] Dispatch",
                     "[8/10] Deliveries", "[9/10] Restock", "[10/10] Check"):
            assert step in out, out
        # the warning's stock went ahead and the townships' keepers (a token made for them)
        # received it before the rain
        assert re.search(r"\d+ transfers received by the townships' keepers before the rain",
                         out), out
        assert "9,690 people, 3 days" in out
        assert re.search(r"shipments in [\d,]+ trips from \d+ depots", out), out
        assert "the largest trips (who sends what, in which vehicle, by which road)" in out
        plan_id = int(re.search(r"storm scenario done .*?plan (\d+)", out).group(1))

        token = run("token", "create", "--role", "admin", "--name", "e2e-checker",
                    "--data-dir", str(data_dir)).stdout.strip()
        api = suite.session(token)
        base = suite.url + API
        plan = api.get(f"{base}/allocations/{plan_id}", timeout=30).json()
        assert plan["status"] == "delivered"
        incident = api.get(f"{base}/incidents/{plan['incident']}", timeout=30).json()
        assert incident["level"] == "III"  # escalated after the landslide, on record
        assert [entry["changes"].get("level") for entry in incident["history"]] == [
            {"from": None, "to": "IV"}, {"from": "IV", "to": "III"}]
        assert sum(s["population"] for s in incident["sites"]) == 9690
        assert len(incident["sites"]) == 3

        # Stock moved equals stock planned: the plan's issues in the ledger, depot by depot.
        live = [s for s in plan["shipments"] if s["status"] != "stranded"]
        planned: dict[tuple[str, str], int] = {}
        for shipment in live:
            key = (shipment["from"], shipment["item"])
            planned[key] = planned.get(key, 0) + shipment["quantity"]
        issued: dict[tuple[str, str], int] = {}
        for line in pages(api, f"{base}/movements"):
            if line["kind"] == "issue" and line["reference"] == f"plan:{plan_id}":
                key = (line["warehouse"], line["item"])
                issued[key] = issued.get(key, 0) - line["quantity"]
        assert issued == planned
        assert sum(planned.values()) > 0
        assert all(s["delivered"] == s["quantity"] for s in live)

        # No negative balance anywhere.
        stock = pages(api, f"{base}/stock")
        assert stock
        negative = [row for row in stock if min(row["on_hand"], row["reserved"],
                                                row["available"]) < 0]
        assert negative == []

        # The closed road is on no route: not the plan's, not the restocking transfers'.
        roads = api.get(f"{base}/roads", timeout=60).json()
        closed = [f["properties"] for f in roads["features"]
                  if f["geometry"]["type"] == "LineString"
                  and f["properties"].get("status") == "closed"]
        assert len(closed) == 1, closed

        def on(path: list[str], edge: dict) -> bool:
            ends = {edge["from"], edge["to"]}
            return any({a, b} == ends for a, b in zip(path, path[1:], strict=False))

        assert not [s["id"] for s in live if on(s["path"], closed[0])]
        assert any("rerouted" in (s.get("note") or "") for s in live)
        # the warning's pre-positioning went ahead before the landslide; the restocking after
        warning = api.get(f"{base}/warnings/1", timeout=30).json()
        ahead = api.get(f"{base}/replenishments/{warning['replenishment_id']}", timeout=30).json()
        assert ahead["status"] == "executed" and ahead["lines"]
        assert {line["destination"] for line in ahead["lines"]} <= set(warning["area"])
        replenishment, lines = 1, []
        while True:
            answer = api.get(f"{base}/replenishments/{replenishment}", timeout=30)
            if answer.status_code == 404:
                break
            assert answer.json()["status"] == "executed"
            if replenishment != ahead["id"]:
                lines.extend(answer.json()["lines"])
            replenishment += 1
        assert lines, "the scenario restocked nothing"
        assert not [line for line in lines if on(line["path"], closed[0])]
        transfers = pages(api, f"{base}/transfers?status=in_transit")
        assert len(transfers) >= 1

        # A second run of the seed changes nothing, even after the storm.
        again = run("seed", "qiandongnan", "--data-dir", str(data_dir), *smaller)
        assert "(all there already)" in again.stdout, again.stdout
    finally:
        code = suite.stop()
    assert code == 0, suite.output
    assert "stopped: inventory, allocation, gateway" in suite.output
    assert wait_gone(data_dir) == [], (processes_of(data_dir), suite.output)
    assert not (data_dir / "suite.json").exists()


def test_the_scenario_needs_a_running_suite(tmp_path):
    nothing = run("scenario", "storm", "--data-dir", str(tmp_path / "var"), check=False)
    assert nothing.returncode == 2 and "no suite is running on" in nothing.stderr
