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


def run_migrations(metadata) -> None:
    """The body of every service's alembic env.py: online migrations only."""
    from alembic import context
    from sqlalchemy import create_engine, pool

    url = context.config.get_main_option("sqlalchemy.url")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
