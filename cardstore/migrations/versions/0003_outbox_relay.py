"""outbox relay: claim lease, code expiry, and a wake-up for relays

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 04:10:00

A relay claims a row for `lease_until` (a relay that dies mid-send leaves it to be retried after that time, by
whoever holds `claimed_by`'s place); a one-time code carries its own `expires_at` so it is never sent late. On
PostgreSQL a trigger NOTIFYs `lockcard_outbox` when a row becomes pending (queued or requeued): the NOTIFY is
delivered at commit, so a relay wakes for committed rows only, and the webhook itself never knows relays exist.
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

CHANNEL = "lockcard_outbox"


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
        batch_op.create_index('ix_outbox_due', ['status', 'next_attempt_at'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION lockcard_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{CHANNEL}', '');
                RETURN NULL;
            END $$""")
        op.execute("""
            CREATE TRIGGER outbox_pending_notify AFTER INSERT OR UPDATE OF status ON outbox
            FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION lockcard_outbox_notify()""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_pending_notify ON outbox")
        op.execute("DROP FUNCTION IF EXISTS lockcard_outbox_notify()")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_due')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('lease_until')
