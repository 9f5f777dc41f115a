"""`emsupply demo` (what `make demo` runs): on an empty data directory it seeds, makes one
token per role (printed once, kept in DIR/tokens.json with mode 0600) and runs the suite; a
second time it neither seeds nor prints tokens again."""

from __future__ import annotations

import json
import stat

import pytest
from e2e_helpers import Up, wait_gone

pytestmark = pytest.mark.e2e
ROLES = ["admin", "commander", "keeper", "reporter", "integration", "viewer"]


def test_demo_seeds_an_empty_directory_makes_tokens_once_and_runs_the_suite(tmp_path):
    data_dir = tmp_path / "var"
    first = Up(data_dir, command="demo", args=("--villages", "40"))
    try:
        first.wait_ready(120)
        out = first.output
        assert "holds no warehouses yet: seeding the Qiandongnan data set" in out
        assert "seeded qiandongnan" in out
        path = data_dir / "tokens.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        tokens = json.loads(path.read_text())
        assert sorted(tokens) == sorted(ROLES)
        for role, token in tokens.items():
            assert f"  {role:<12} {token}" in out
        api = first.session(tokens["viewer"])
        summary = api.get(f"{first.url}/api/v1/stock/summary", timeout=10)
        assert summary.status_code == 200 and summary.json()["rows"]
        keeper = first.session(tokens["keeper"])
        inside = keeper.post(f"{first.url}/api/v1/movements", timeout=10, json={
            "warehouse": "KL", "item": "TENT", "kind": "receipt", "quantity": 1})
        outside = keeper.post(f"{first.url}/api/v1/movements", timeout=10, json={
            "warehouse": "RJ", "item": "TENT", "kind": "receipt", "quantity": 1})
        assert (inside.status_code, outside.status_code) == (201, 403)
    finally:
        assert first.stop() == 0, first.output
    assert wait_gone(data_dir) == []

    second = Up(data_dir, command="demo", port=first.port)
    try:
        second.wait_ready(60)
        assert "seeding" not in second.output
        assert f"demo tokens: {data_dir / 'tokens.json'}" in second.output
        assert not any(token in second.output for token in tokens.values())
    finally:
        assert second.stop() == 0, second.output
    assert wait_gone(data_dir) == []
