"""idempotency that cannot lie: card status versions; a session may get a second ticket for one card (issue 12)

A ticket, a replacement order and a hand-off record the card's status_version; their answer is replayed only while
the card still has it. The unique keys on (session, card, action) go: the same session asking again after the card
changed gets a new ticket. Concurrent deliveries of one request are serialised by the card's row lock instead.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# The (session, card, action) keys 0001 created without names: PostgreSQL named them <table>_<columns>_key; on
# SQLite they are found by reflection and named by this convention for the batch (table rebuilt) to drop them.
KEYS = {
    'lock_tickets': ['session', 'card_id', 'lock_type'],
    'reissue_requests': ['session', 'card_id'],
    'handoffs': ['session', 'card_id', 'requested_action'],
}
INDEXES = {
    'lock_tickets': 'ix_lock_tickets_session_card',
    'reissue_requests': 'ix_reissue_requests_session_card',
    'handoffs': 'ix_handoffs_session_card',
}
SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_N_name)s"}


def _key_name(table: str, postgresql: bool) -> str:
    columns = '_'.join(KEYS[table])
    return f'{table}_{columns}_key' if postgresql else f'uq_{table}_{columns}'


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == 'postgresql'
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_version', sa.Integer(), server_default='0', nullable=False))
    for table, columns in KEYS.items():
        with op.batch_alter_table(table, schema=None,
                                  naming_convention=None if postgresql else SQLITE_NAMES) as batch_op:
            batch_op.add_column(sa.Column('card_status_version', sa.Integer(), server_default='0', nullable=False))
            batch_op.drop_constraint(_key_name(table, postgresql), type_='unique')
            batch_op.create_index(INDEXES[table], columns, unique=False)


def downgrade() -> None:
    # Fails if a session holds two tickets for one card: those are real records, not to be deleted silently.
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for table, columns in KEYS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(INDEXES[table])
            batch_op.create_unique_constraint(_key_name(table, postgresql), columns)
            batch_op.drop_column('card_status_version')
    with op.batch_alter_table('cards', schema=None) as batch_op:
        batch_op.drop_column('status_version')
