"""the outbox's status index dropped: ix_outbox_due (status, next_attempt_at) answers every look-up by status

Every query on the outbox that filters or groups by status (the relay's claim, the backlog, the console's outbox
page and counts) can use ix_outbox_due, whose first column is status. The single-column index only cost a page
write in every commit that queues a notice (a lock, a code) and in every one that records a delivery (issue 15).

Revision ID: 0008
Revises: 0007
"""
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_outbox_status', table_name='outbox')


def downgrade() -> None:
    op.create_index('ix_outbox_status', 'outbox', ['status'])
