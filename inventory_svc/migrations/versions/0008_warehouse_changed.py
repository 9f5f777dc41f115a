"""warehouses stamped by the database on every change, so that a snapshot `since` a version
sends only the warehouses added or changed, not the whole network again

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 11:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# PostgreSQL: the writing transaction's id, as a balance's (0007's function sets NEW.changed).
PG_TRIGGER = """
CREATE TRIGGER warehouse_changed BEFORE INSERT OR UPDATE ON warehouses
FOR EACH ROW EXECUTE FUNCTION stock_changed()
"""
# SQLite: one more than the highest so far (writers take turns); see 0007.
SQLITE_STAMP = ("UPDATE warehouses SET changed = "
                "(SELECT COALESCE(MAX(changed), 0) + 1 FROM warehouses) WHERE id = NEW.id;")
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER warehouse_changed_insert AFTER INSERT ON warehouses BEGIN {SQLITE_STAMP} END",
    "CREATE TRIGGER warehouse_changed_update AFTER UPDATE ON warehouses "
    f"WHEN NEW.changed = OLD.changed BEGIN {SQLITE_STAMP} END",
)


def upgrade() -> None:
    with op.batch_alter_table('warehouses', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed', sa.BigInteger(), nullable=False,
                                      server_default=sa.text('0')))
        batch_op.create_index('ix_warehouses_changed', ['changed'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PG_TRIGGER)
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER warehouse_changed ON warehouses")
    else:
        op.execute("DROP TRIGGER warehouse_changed_insert")
        op.execute("DROP TRIGGER warehouse_changed_update")
    with op.batch_alter_table('warehouses', schema=None) as batch_op:
        batch_op.drop_index('ix_warehouses_changed')
        batch_op.drop_column('changed')
