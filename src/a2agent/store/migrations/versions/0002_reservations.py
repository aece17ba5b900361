"""balance holds: accounts.reserved_micro and request_records.reserved_micro (reserve, then settle)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('reserved_micro', sa.BigInteger(), nullable=False, server_default='0'))
    with op.batch_alter_table('request_records') as batch:
        batch.add_column(sa.Column('reserved_micro', sa.BigInteger(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('request_records') as batch:
        batch.drop_column('reserved_micro')
    with op.batch_alter_table('accounts') as batch:
        batch.drop_column('reserved_micro')
