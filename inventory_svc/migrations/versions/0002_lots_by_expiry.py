"""lots keyed by (stock, lot, expiry): unnamed stock of two expiry dates stays two lots

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 12:00:00
"""
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_constraint('uq_lots_stock_id', type_='unique')
        batch_op.create_unique_constraint('uq_lots_stock_id', ['stock_id', 'lot', 'expires_on'])


def downgrade() -> None:
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_constraint('uq_lots_stock_id', type_='unique')
        batch_op.create_unique_constraint('uq_lots_stock_id', ['stock_id', 'lot'])
