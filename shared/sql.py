"""Small SQL helpers that differ by dialect."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_for(session: Session, table: Table):
    """An INSERT that knows ON CONFLICT on both PostgreSQL and SQLite."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def locks_rows(session: Session) -> bool:
    """SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL needs FOR UPDATE."""
    return session.get_bind().dialect.name == "postgresql"
