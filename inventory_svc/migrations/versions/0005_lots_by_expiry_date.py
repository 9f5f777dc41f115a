"""lots indexed by expiry date: expired and expiring stock found without reading every lot

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-16 12:00:00
"""
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.create_index('ix_lots_expires_on', ['expires_on'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('lots', schema=None) as batch_op:
        batch_op.drop_index('ix_lots_expires_on')
