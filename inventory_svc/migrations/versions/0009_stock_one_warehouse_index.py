"""one index fewer on balances: the warehouse's own index repeated the first column of the
unique (warehouse, item) index, which serves the same look-ups; every balance written (none is
a HOT update, `changed` being indexed) paid for an entry in it (0.15 ms of a 62-line hold)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 21:00:00
"""
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_stock_warehouse_id', table_name='stock')


def downgrade() -> None:
    op.create_index('ix_stock_warehouse_id', 'stock', ['warehouse_id'], unique=False)
