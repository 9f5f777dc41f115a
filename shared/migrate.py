"""Alembic, driven from code: each service keeps its migrations beside it and upgrades its own
database to head before it serves."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory


def alembic_config(package: str, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files(package) / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["service_package"] = package
    return config


def upgrade(package: str, url: str) -> None:
    command.upgrade(alembic_config(package, url), "head")


def heads(package: str) -> list[str]:
    return list(ScriptDirectory.from_config(alembic_config(package, "sqlite://")).get_heads())
