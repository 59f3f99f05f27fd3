"""a lock ticket written to one index besides its unique number (issue 15: the lock's commit)

A lock's commit writes every B-tree page it changed to the WAL, each page whole (4 KiB, two system calls): 13–14
pages a lock, one of them per index on the tables it writes. lock_tickets had two indexes besides its unique
number: (session, card_id, lock_type) for a retry's look-up of its ticket, and (card_id) for the card's tickets
(the console, the foreign key's cascade). One index, card first, serves both:

- lock_tickets (card_id, session, lock_type): a retry's look-up is three equalities in either order; `card_id IN
  (…)` and the cascade search its prefix. It replaces ix_lock_tickets_session_card and ix_lock_tickets_card_id.

Revision ID: 0010
Revises: 0009
"""
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New first, old after: no moment without an index for the retry's look-up or the foreign key's cascade.
    op.create_index('ix_lock_tickets_card_session', 'lock_tickets', ['card_id', 'session', 'lock_type'])
    op.drop_index('ix_lock_tickets_session_card', table_name='lock_tickets')
    op.drop_index('ix_lock_tickets_card_id', table_name='lock_tickets')


def downgrade() -> None:
    op.create_index('ix_lock_tickets_card_id', 'lock_tickets', ['card_id'])
    op.create_index('ix_lock_tickets_session_card', 'lock_tickets', ['session', 'card_id', 'lock_type'])
    op.drop_index('ix_lock_tickets_card_session', table_name='lock_tickets')
