"""warehouses carry a Chinese name, as items do

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14 12:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('warehouses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_zh', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('warehouses', schema=None) as batch_op:
        batch_op.drop_column('name_zh')
