"""the read tags' statement answered from indexes: cards and verified sessions covered (issue 15, store growth)

Every read tag runs one statement (cardstore/repository.py `_READER`): the customer by number, their cards in id
order (LEFT JOIN), and an EXISTS on the session's verification. With an index on cards.customer_id alone and one
on verified_sessions.session alone, each read also looked up every card row and the verification row in their
tables: more B-tree pages per read, and on a large store each of them a page no cache holds. These indexes carry
what the statement reads, so SQLite (and PostgreSQL, in an index-only scan) never visits those tables:

- cards (customer_id, id, last4, vendor, status): a customer's cards already in id order, with what a read shows;
  it replaces ix_cards_customer_id, its prefix (the foreign key's look-ups and cascades use it as well). Its cost:
  a lock changes `status`, so the lock also moves the card's entry in this index (on PostgreSQL, no HOT update).
- verified_sessions (session, customer_id, verified_at): the whole EXISTS (and verified_since); replaces
  ix_verified_sessions_session. Rows are only ever inserted there.

Revision ID: 0007
Revises: 0006
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New first, old after: no moment without an index for the read (or for the foreign key's cascades).
    op.create_index('ix_cards_customer_views', 'cards', ['customer_id', 'id', 'last4', 'vendor', 'status'])
    op.drop_index('ix_cards_customer_id', table_name='cards')
    op.create_index('ix_verified_sessions_session_customer', 'verified_sessions',
                    ['session', 'customer_id', 'verified_at'])
    op.drop_index('ix_verified_sessions_session', table_name='verified_sessions')


def downgrade() -> None:
    op.create_index('ix_verified_sessions_session', 'verified_sessions', ['session'])
    op.drop_index('ix_verified_sessions_session_customer', table_name='verified_sessions')
    op.create_index('ix_cards_customer_id', 'cards', ['customer_id'])
    op.drop_index('ix_cards_customer_views', table_name='cards')
