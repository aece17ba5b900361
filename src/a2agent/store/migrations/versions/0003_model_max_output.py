"""models.max_output_tokens: the upstream's largest answer, to clamp callers' max_tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.add_column(sa.Column('max_output_tokens', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('models') as batch:
        batch.drop_column('max_output_tokens')
