"""`shared.sql.value_rows`: rows of integers or of text joined in one statement whose text does not depend on
how many rows there are, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from sqlalchemy import String, select

from inventory_svc.models import Item, Stock, Warehouse
from shared.sql import value_rows


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
