"""what each event is about (plan:12, warehouse:KL, ...), for GET /audit

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 14:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'event_entities',
        sa.Column('entity', sa.String(length=120), nullable=False),
        sa.Column('event_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  autoincrement=False, nullable=False),
        sa.ForeignKeyConstraint(['event_id'], ['events.id'],
                                name=op.f('fk_event_entities_event_id_events')),
        sa.PrimaryKeyConstraint('entity', 'event_id', name=op.f('pk_event_entities')))


def downgrade() -> None:
    op.drop_table('event_entities')
