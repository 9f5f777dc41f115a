"""a plan's hold_expires_at (a lapsed hold is its own status); drills; an incident's history

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 14:05:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('drill', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.add_column(sa.Column('history', sa.JSON(), nullable=True))
    op.execute("UPDATE incidents SET history = '[]'")
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hold_expires_at', sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('drill', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_column('drill')
        batch_op.drop_column('hold_expires_at')
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_column('history')
        batch_op.drop_column('drill')
