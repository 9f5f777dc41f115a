"""Small SQL helpers that differ by dialect."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    FromClause,
    Table,
    Text,
    cast,
    func,
    insert,
    literal,
    select,
)
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


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT many rows (dicts of the same keys) in one statement whatever their number: on
    PostgreSQL one array a column, unnested (JSON columns sent as text and cast), a column that
    is null in every row left to its default; elsewhere an executemany. A pipelined
    executemany of a plan's 62 shipments was 62 statements for the database and a parameter
    of SQLAlchemy's for each of their 800 values."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), list(rows))
        return
    names = [name for name in rows[0] if any(row[name] is not None for row in rows)]
    kinds = [table.c[name].type for name in names]
    as_json = [isinstance(kind, JSON) for kind in kinds]
    values = [[json.dumps(row[name]) if text else row[name]
               for name, text in zip(names, as_json, strict=True)] for row in rows]
    sent = [Text() if text else kind for kind, text in zip(kinds, as_json, strict=True)]
    named = value_rows(session, "new_rows", names, values, sent)
    session.execute(insert(table).from_select(names, select(*(
        cast(named.c[name], kind) if text else named.c[name]
        for name, kind, text in zip(names, kinds, as_json, strict=True)))))
