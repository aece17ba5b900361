"""key controls (disable, spend cap, model allow-list, expiry), request-log fields, console
language per account

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('disabled', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('spend_cap_micro', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('spend_cap_period', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('allowed_models', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=16), nullable=True))
    with op.batch_alter_table('daily_usage', schema=None) as batch_op:
        batch_op.create_index('ix_daily_key_day', ['key_id', 'day'], unique=False)
    with op.batch_alter_table('request_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_agent', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('request_records', schema=None) as batch_op:
        batch_op.drop_column('user_agent')
    with op.batch_alter_table('daily_usage', schema=None) as batch_op:
        batch_op.drop_index('ix_daily_key_day')
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('locale')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('expires_at')
        batch_op.drop_column('allowed_models')
        batch_op.drop_column('spend_cap_period')
        batch_op.drop_column('spend_cap_micro')
        batch_op.drop_column('disabled')
