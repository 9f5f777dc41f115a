"""weather warnings, and the pre-positioning each may propose

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 15:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'warnings',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('type', sa.String(length=40), nullable=False),
        sa.Column('area', sa.JSON(), nullable=False),
        sa.Column('starts_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ends_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('people', sa.BigInteger(), nullable=False),
        sa.Column('days', sa.Integer(), nullable=False),
        sa.Column('replenishment_id', sa.BigInteger(), nullable=True),
        sa.Column('created_by', sa.String(length=120), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_warnings')))


def downgrade() -> None:
    op.drop_table('warnings')
