"""the number a verified session was verified with, as the turn gave it, and the customer's number it stood for

A lock later in the same session that sends the same text is matched to the session's customer by these two
columns, without parsing the number again (phonenumbers was the largest cost of a lock by a caller the process had
not seen: issue 15). Rows written before this revision have neither: their locks parse the number, as before.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('verified_sessions') as batch:
        batch.add_column(sa.Column('phone_text', sa.String(length=40), nullable=True))
        batch.add_column(sa.Column('phone_e164', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('verified_sessions') as batch:
        batch.drop_column('phone_e164')
        batch.drop_column('phone_text')
