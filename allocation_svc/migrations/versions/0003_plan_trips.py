"""plans driven: the trips that carry a plan's shipments, its objective, bound and gap; a
shipment's reason kept in parts, to be said in the reader's language

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 13:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trips', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('objective', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('bound', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('gap', sa.Float(), nullable=True))
    op.execute("UPDATE plans SET trips = '[]'")
    with op.batch_alter_table('shipments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason_parts', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('shipments', schema=None) as batch_op:
        batch_op.drop_column('reason_parts')
    with op.batch_alter_table('plans', schema=None) as batch_op:
        batch_op.drop_column('gap')
        batch_op.drop_column('bound')
        batch_op.drop_column('objective')
        batch_op.drop_column('trips')
