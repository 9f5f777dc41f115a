"""`shared.sql.value_rows`: rows of integers or of text joined in one statement whose text does
not depend on how many rows there are; `insert_rows`, rows written in one statement; on SQLite
and PostgreSQL alike."""

from __future__ import annotations

from sqlalchemy import String, func, select

from inventory_svc.models import Item, Stock, Warehouse
from shared.sql import insert_rows, value_rows


def test_rows_join_by_value_and_the_text_keeps_its_shape(inventory_db, inv):
    from factories import build_tree, receive

    build_tree(inv)
    for warehouse in ("KL-T01", "KL"):
        receive(inv, warehouse, "TENT", 5)
    with inventory_db.reading() as session:
        ids = sorted(session.scalars(select(Stock.id)))
        texts = set()
        for rows in ([(ids[0], 7)], [(ids[1], 9), (ids[0], 7), (10**12, 1)], []):
            asked = value_rows(session, "asked", ("stock_id", "quantity"), rows)
            query = (select(Stock.id, asked.c.quantity)
                     .join(asked, Stock.id == asked.c.stock_id).order_by(Stock.id))
            assert session.execute(query).all() == sorted(
                row for row in rows if row[0] in ids)
            texts.add(str(query.compile(session.get_bind())))
    assert len(texts) == 1  # one statement for one row, three or none


def test_text_rows_join_codes(inventory_db, inv):
    from factories import build_tree

    build_tree(inv)
    with inventory_db.reading() as session:
        texts = set()
        for rows in ([("KL", "TENT")], [("KL-T01", "QUILT"), ("KL", "TENT"), ("NOWHERE", "TENT")]):
            named = value_rows(session, "named", ("code", "sku"), rows, (String, String))
            query = (select(Warehouse.code, Item.sku).select_from(named)
                     .join(Warehouse, Warehouse.code == named.c.code)
                     .join(Item, Item.sku == named.c.sku).order_by(Warehouse.code, Item.sku))
            assert session.execute(query).all() == sorted(
                row for row in rows if row[0] != "NOWHERE")
            texts.add(str(query.compile(session.get_bind())))
    assert len(texts) == 1


def test_insert_rows_writes_every_kind_of_column(inventory_db):
    from datetime import UTC, datetime

    from inventory_svc.models import outbox

    at = datetime(2026, 7, 1, 8, 30, tzinfo=UTC)
    rows = [{"type": "stock.changed", "at": at, "data": {"warehouse": "黔东南州级库",
                                                         "path": ["n-1", "n-2"], "q": 1.5},
             "published_at": None},
            {"type": "plan.made", "at": at, "data": [], "published_at": None}]
    with inventory_db.unit_of_work() as session:
        first = session.scalar(select(func.coalesce(func.max(outbox.c.id), 0)))
        insert_rows(session, outbox, rows)
    with inventory_db.reading() as session:
        found = session.execute(select(outbox.c.type, outbox.c.at, outbox.c.data,
                                       outbox.c.published_at)
                                .where(outbox.c.id > first).order_by(outbox.c.id)).all()
    read = [{**row._mapping, "at": row.at.replace(tzinfo=UTC)} for row in found]  # SQLite: naive
    assert read == rows
