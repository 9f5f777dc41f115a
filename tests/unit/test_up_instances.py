"""`emsupply up --instances N`: N inventory and N allocation processes on the ports after the
gateway's, their URLs handed to the gateway and the allocation service, and N > 1 refused while
a service's database is SQLite."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from emsupply import supervisor
from emsupply.cli import main
from shared.config import ConfigError, load_settings

NAMES = ("inventory", "allocation", "gateway")
PG = {"EMSUPPLY_INVENTORY_DB": "postgresql+psycopg://u@db/inventory",
      "EMSUPPLY_ALLOCATION_DB": "postgresql+psycopg://u@db/allocation",
      "EMSUPPLY_SECRET": "s" * 16}


def layout(port: int, instances: int) -> list[tuple[str, str, int]]:
    return [(s.name, s.package, s.port) for s in supervisor.services(port, NAMES, instances)]


def test_one_instance_each_is_the_layout_of_before():
    assert layout(8000, 1) == [("inventory", "inventory_svc", 8001),
                               ("allocation", "allocation_svc", 8002),
                               ("gateway", "gateway", 8000)]


def test_several_instances_take_the_ports_after_the_gateways():
    assert layout(9000, 3) == [
        ("inventory", "inventory_svc", 9001), ("inventory-2", "inventory_svc", 9002),
        ("inventory-3", "inventory_svc", 9003), ("allocation", "allocation_svc", 9004),
        ("allocation-2", "allocation_svc", 9005), ("allocation-3", "allocation_svc", 9006),
        ("gateway", "gateway", 9000)]


def test_the_instances_urls_are_handed_on(tmp_path):
    env = dict(PG)
    supervisor.scale(env, tmp_path, 9000, NAMES, 2)
    assert env["EMSUPPLY_INVENTORY_URL"] == "http://127.0.0.1:9001,http://127.0.0.1:9002"
    assert env["EMSUPPLY_ALLOCATION_URL"] == "http://127.0.0.1:9003,http://127.0.0.1:9004"
    for service in NAMES:  # what every process then reads
        settings = load_settings(service, env, tmp_path)
        assert settings.inventory_urls == ("http://127.0.0.1:9001", "http://127.0.0.1:9002")
        assert settings.allocation_urls == ("http://127.0.0.1:9003", "http://127.0.0.1:9004")
    one = dict(PG)
    supervisor.scale(one, tmp_path, 9000, NAMES, 1)
    assert one == PG  # one instance each: the settings as they were


@pytest.mark.parametrize("env,shown", [
    ({"EMSUPPLY_SECRET": "s" * 16},
     "EMSUPPLY_INVENTORY_DB is not set (the embedded SQLite default)"),
    ({**PG, "EMSUPPLY_ALLOCATION_DB": "sqlite:////srv/allocation.sqlite"},
     "EMSUPPLY_ALLOCATION_DB is SQLite"),
])
def test_several_instances_on_sqlite_are_refused_in_one_line(tmp_path, env, shown):
    with pytest.raises(ConfigError) as refused:
        supervisor.scale(dict(env), tmp_path, 9000, NAMES, 2)
    assert str(refused.value) == (
        "--instances 2 needs PostgreSQL for the inventory and allocation databases, which "
        f"several processes then write at once: {shown}; set it to a postgresql+psycopg:// URL")


def test_the_command_refuses_before_starting_anything(tmp_path):
    data_dir = tmp_path / "var"
    answer = CliRunner().invoke(main, ["up", "--data-dir", str(data_dir), "--instances", "2",
                                       "--port", "9000"],
                                env={"EMSUPPLY_INVENTORY_DB": "", "EMSUPPLY_ALLOCATION_DB": "",
                                     "EMSUPPLY_SECRET": "s" * 16})
    assert answer.exit_code == 2, answer.output
    assert "configuration error: --instances 2 needs PostgreSQL" in answer.output
    assert not (data_dir / "logs").exists()  # nothing was started, nothing migrated
    assert not list(data_dir.glob("*.sqlite"))


def test_no_room_for_the_instances_above_the_port():
    with pytest.raises(ConfigError, match=r"^--port 65530 leaves no room for 9 services"):
        supervisor.check_ports(65530, NAMES, 4)
