"""`emsupply up` when things go wrong: a service dies while the suite runs (the others are
stopped, and the command says which died, how, and the end of its log); a bad
EMSUPPLY_INVENTORY_DB (one clear line, a non-zero exit, nothing left running); a port taken."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest
from e2e_helpers import (
    EMSUPPLY,
    ROOT,
    Up,
    clean_env,
    free_block,
    processes_of,
    service_master,
    wait_gone,
)

pytestmark = pytest.mark.e2e


def test_a_service_that_dies_stops_the_others_and_is_named_with_its_log(tmp_path):
    data_dir = tmp_path / "var"
    suite = Up(data_dir)
    try:
        suite.wait_ready()
        victim = service_master(data_dir, "inventory_svc")
        before = set(processes_of(data_dir))
        os.kill(victim, signal.SIGKILL)
        code = suite.wait_exit(40)
    finally:
        suite.stop()
    out = suite.output
    assert code == 1, out
    assert "inventory died (killed by signal SIGKILL)" in out
    assert f"The end of {data_dir / 'logs' / 'inventory.log'}:" in out
    assert "Booting worker" in out or "Listening at" in out  # gunicorn's lines of that log
    assert "stopped: inventory, allocation, gateway" in out
    assert before - {victim}  # the others were running ...
    assert wait_gone(data_dir) == [], out  # ... and none is left: workers, Redis, relays
    assert not (data_dir / "suite.json").exists()


@pytest.mark.parametrize("value, says", [
    ("mysql://root@127.0.0.1/emsupply", "unsupported database 'mysql'"),
    ("this is not a url", "is not a database URL"),
    ("postgresql+psycopg://nobody@127.0.0.1:1/nothing", "cannot open the inventory database"),
    ("sqlite:////nonexistent-emsupply-dir/inventory.sqlite",
     "cannot open the inventory database"),
])
def test_a_bad_inventory_database_is_one_line_and_nothing_runs(tmp_path, value, says):
    data_dir = tmp_path / "var"
    port = free_block()
    answer = subprocess.run([EMSUPPLY, "up", "--data-dir", str(data_dir), "--port", str(port)],
                            cwd=ROOT, env=clean_env(EMSUPPLY_INVENTORY_DB=value),
                            capture_output=True, text=True, timeout=60)
    assert answer.returncode == 2
    assert answer.stdout == ""
    lines = answer.stderr.splitlines()
    assert len(lines) == 1, answer.stderr
    assert lines[0].startswith("emsupply: configuration error: ")
    assert "EMSUPPLY_INVENTORY_DB" in lines[0] and says in lines[0], lines[0]
    assert "Traceback" not in answer.stderr
    assert processes_of(data_dir) == []
    assert not (data_dir / "suite.json").exists()
    assert not (data_dir / "redis" / "redis.sock").exists()


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path):
    data_dir = tmp_path / "var"
    port = free_block()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 2))
        taken.listen()
        answer = subprocess.run([EMSUPPLY, "up", "--data-dir", str(data_dir), "--port",
                                 str(port)], cwd=ROOT, env=clean_env(), capture_output=True,
                                text=True, timeout=60)
    assert answer.returncode == 2
    assert answer.stderr.strip() == (
        f"emsupply: configuration error: port {port + 2} (the allocation service's) is already "
        "in use; is another suite running? Choose another --port")
    assert processes_of(data_dir) == []



def test_a_redis_that_does_not_answer_is_one_line_before_anything_starts(tmp_path):
    data_dir = tmp_path / "var"
    answer = subprocess.run([EMSUPPLY, "up", "--data-dir", str(data_dir), "--port",
                             str(free_block())], cwd=ROOT,
                            env=clean_env(EMSUPPLY_REDIS_URL="redis://127.0.0.1:1/0"),
                            capture_output=True, text=True, timeout=60)
    assert answer.returncode == 2
    lines = answer.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "emsupply: configuration error: EMSUPPLY_REDIS_URL: cannot reach Redis at "
        "redis://127.0.0.1:1/0"), answer.stderr
    assert processes_of(data_dir) == []
