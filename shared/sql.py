"""Small SQL helpers that differ by dialect."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, FromClause, Table, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeEngine


def insert_for(session: Session, table: Table):
    """An INSERT that knows ON CONFLICT on both PostgreSQL and SQLite."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def locks_rows(session: Session) -> bool:
    """SQLite serialises writers with BEGIN IMMEDIATE; PostgreSQL needs FOR UPDATE."""
    return session.get_bind().dialect.name == "postgresql"


def value_rows(session: Session, name: str, columns: Sequence[str],
               rows: Sequence[Sequence[Any]],
               types: Sequence[type[TypeEngine] | TypeEngine] | None = None) -> FromClause:
    """Rows of values as a table to join in one statement (a hold's (stock id, quantity)
    pairs, its (warehouse code, sku) pairs), sent as one parameter per column: the statement's
    text is the same whatever the number of rows. With a bind per value (IN lists, CASE),
    psycopg parsed each new text anew and SQLAlchemy built a parameter per value, a tenth of a
    62-line hold's CPU. `types` are the columns' types, BigInteger when not given. On
    PostgreSQL the columns are arrays, unnested; on SQLite one JSON array, read by json_each."""
    types = types or [BigInteger] * len(columns)
    if session.get_bind().dialect.name == "postgresql":
        values = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
        return func.unnest(*(literal(list(column), postgresql.ARRAY(kind))
                             for column, kind in zip(values, types, strict=True))
                           ).table_valued(*columns).render_derived(name=name)
    each = func.json_each(literal(json.dumps([list(row) for row in rows]))).table_valued(
        "value").alias(f"{name}_json")
    return select(*(func.json_extract(each.c.value, f"$[{index}]").label(column)
                    for index, column in enumerate(columns))).subquery(name)
