"""`shared.sql.int_rows`: integer rows joined in one statement whose text does not depend on
how many rows there are, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from sqlalchemy import select

from inventory_svc.models import Stock
from shared.sql import int_rows


def test_rows_join_by_value_and_the_text_keeps_its_shape(inventory_db, inv):
    from factories import build_tree, receive

    build_tree(inv)
    for warehouse in ("KL-T01", "KL"):
        receive(inv, warehouse, "TENT", 5)
    with inventory_db.reading() as session:
        ids = sorted(session.scalars(select(Stock.id)))
        texts = set()
        for rows in ([(ids[0], 7)], [(ids[1], 9), (ids[0], 7), (10**12, 1)], []):
            asked = int_rows(session, "asked", ("stock_id", "quantity"), rows)
            query = (select(Stock.id, asked.c.quantity)
                     .join(asked, Stock.id == asked.c.stock_id).order_by(Stock.id))
            assert session.execute(query).all() == sorted(
                row for row in rows if row[0] in ids)
            texts.add(str(query.compile(session.get_bind())))
    assert len(texts) == 1  # one statement for one row, three or none
