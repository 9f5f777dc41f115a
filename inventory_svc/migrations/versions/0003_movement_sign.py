"""a ledger line's quantity is signed as its kind: + in, - out, an adjustment either way, never 0

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 12:00:00
"""
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

SIGNED_AS_ITS_KIND = (
    "(kind IN ('receipt', 'transfer_in') AND quantity > 0) OR "
    "(kind IN ('issue', 'transfer_out') AND quantity < 0) OR "
    "(kind = 'adjustment' AND quantity <> 0)")


def upgrade() -> None:
    with op.batch_alter_table('movements', schema=None) as batch_op:
        batch_op.create_check_constraint('signed_as_its_kind', SIGNED_AS_ITS_KIND)


def downgrade() -> None:
    with op.batch_alter_table('movements', schema=None) as batch_op:
        batch_op.drop_constraint('signed_as_its_kind', type_='check')
