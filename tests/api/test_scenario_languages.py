"""`emsupply scenario storm` told in Chinese (issue 9, items 4 and 5), in this process on a
smaller Qiandongnan (every county and township, 300 villages): the backbone plan, its trips by
depot level and its largest trips, the bound and the gap, with the API's reasons in Chinese too."""

from __future__ import annotations

import os
import re

import pytest

from emsupply import dataset, supervisor
from emsupply import seed as seeding
from emsupply.scenario import Storm, _width, table
from emsupply.suite import LocalSuite


@pytest.fixture
def seeded(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("EMSUPPLY_"):
            monkeypatch.delenv(key)
    data_dir = tmp_path / "var"
    supervisor.prepare(data_dir, ("inventory", "allocation"), {})
    seeding.seed(LocalSuite(data_dir), dataset.generate(villages=300))
    return data_dir


def test_the_storm_in_chinese(seeded):
    lines: list[str] = []
    client = LocalSuite(seeded, language="zh")
    outcome = Storm(client, lines.append, None, "zh", keepers=lambda codes: client).run()
    out = "\n".join(lines)
    assert outcome.unmet == 0 and outcome.shipped > 0
    for step in ("[1/10] 早预警", "[2/10] 初报",
                 "[4/10] 按人口定额生成调拨方案（州级为支撑、县级为基础、乡村为补充",
                 "[6/10] 重新规划", "[10/10] 核对"):
        assert step in out, out
    assert "预计 3,000 人需转移避险 3 天" in out
    assert outcome.prepositioned and outcome.received == len(outcome.prepositioned)
    assert f"{outcome.received} 笔调拨已在降雨前由乡镇库管员签收" in out
    moved = client.call("GET", f"/api/v1/warnings/{outcome.warning}")
    assert moved["replenishment_id"] is not None
    for transfer in outcome.prepositioned:
        received = client.call("GET", f"/api/v1/transfers/{transfer}")
        assert received["status"] == "received"
        assert received["destination"] in outcome.townships
    assert "9,690 人，3 天" in out
    assert "事件升级：IV 级 → III 级" in out
    plan = re.search(r"方案 \d+：已计划，[\d,]+ 个运单，([\d,]+) 车次，来自 ([\d,]+) 个仓库", out)
    assert plan, out
    assert 0 < int(plan.group(1).replace(",", "")) <= 250
    assert int(plan.group(2)) <= 60
    assert re.search(r"下界 [\d,]+，差距 \d+\.\d\d%", out), out
    by_level = out[out.index("发出级别"):]
    assert re.search(r"州级\s+1\s+\d+\s+[\d,]+\s+\d+\s+货车", by_level), by_level[:400]
    assert "最大的车次（谁发什么、用什么车、走哪条路）" in out
    assert re.search(r"黔东南州 QDN\s+\S+ RJ-T\d\d\s+货车\s+10\.0\s+\S", out), out
    assert "公里 > 高速公路" in out or "高速公路" in out
    assert "未满足：无" in out
    assert "Storm" not in out and "plan " not in out  # nothing left in English


def test_a_table_aligns_chinese_as_a_terminal_shows_it():
    text = table(["site", "units"], [["长桥镇 RJ-T11", 4260], ["X", 5]], language="zh")
    rows = text.splitlines()
    assert rows[0].strip().startswith("现场")
    assert len({_width(row.rstrip()) for row in rows}) == 1, text
