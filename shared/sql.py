"""Small SQL helpers that differ by dialect."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    FromClause,
    Insert,
    Table,
    Text,
    bindparam,
    cast,
    column,
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
    PostgreSQL the rows sent as one JSON document and read by `json_to_recordset` (a column
    null in every row left to its default); elsewhere an executemany. A pipelined executemany
    of a plan's 62 shipments was 62 statements for the database and a parameter of
    SQLAlchemy's for each of their 800 values; arrays a column, psycopg escapes each text
    value in Python."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), list(rows))
        return
    names = tuple(name for name in rows[0] if any(row[name] is not None for row in rows))
    document = json.dumps([{name: row[name] for name in names} for row in rows],
                          ensure_ascii=False, default=_json_value)
    session.execute(_insert_from_json(table, names), {"rows": document})


@functools.cache
def _insert_from_json(table: Table, names: tuple[str, ...]) -> Insert:
    """The INSERT of `insert_rows`, built once for a table and its columns given."""
    found = func.json_to_recordset(cast(bindparam("rows", type_=Text()), JSON)).table_valued(
        *(column(name, table.c[name].type) for name in names)).render_derived(
        name="new_rows", with_types=True)
    return insert(table).from_select(names, select(*(found.c[name] for name in names)))


def _json_value(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
