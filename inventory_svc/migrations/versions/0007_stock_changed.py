"""balances stamped by the database on every change, for snapshots read by what changed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 18:00:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# PostgreSQL: the writing transaction's id (64 bits, with its epoch), so that a reader can ask
# which rows were written by transactions its last snapshot did not see, whatever order they
# started or committed in.
PG_FUNCTION = """
CREATE FUNCTION stock_changed() RETURNS trigger AS $$
BEGIN
    NEW.changed := pg_current_xact_id()::text::bigint;
    RETURN NEW;
END
$$ LANGUAGE plpgsql
"""
PG_TRIGGER = """
CREATE TRIGGER stock_changed BEFORE INSERT OR UPDATE ON stock
FOR EACH ROW EXECUTE FUNCTION stock_changed()
"""
# A later migration that makes SQLite copy the stock table (a batch "move and copy") must create
# these triggers again: the copy has none.
# SQLite: writers take turns (BEGIN IMMEDIATE), so one more than the highest so far is in
# commit order. A trigger's own update does not fire it again (recursive_triggers is off, and
# the WHEN clause says so anyway).
SQLITE_STAMP = ("UPDATE stock SET changed = (SELECT COALESCE(MAX(changed), 0) + 1 FROM stock) "
                "WHERE id = NEW.id;")
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER stock_changed_insert AFTER INSERT ON stock BEGIN {SQLITE_STAMP} END",
    "CREATE TRIGGER stock_changed_update AFTER UPDATE ON stock "
    f"WHEN NEW.changed = OLD.changed BEGIN {SQLITE_STAMP} END",
)


def upgrade() -> None:
    with op.batch_alter_table('stock', schema=None) as batch_op:
        batch_op.add_column(sa.Column('changed', sa.BigInteger(), nullable=False,
                                      server_default=sa.text('0')))
        batch_op.create_index('ix_stock_changed', ['changed'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
        op.execute("UPDATE stock SET changed = 0")  # stamped, as every row from now on
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER stock_changed ON stock")
        op.execute("DROP FUNCTION stock_changed()")
    else:
        op.execute("DROP TRIGGER stock_changed_insert")
        op.execute("DROP TRIGGER stock_changed_update")
    with op.batch_alter_table('stock', schema=None) as batch_op:
        batch_op.drop_index('ix_stock_changed')
        batch_op.drop_column('changed')
