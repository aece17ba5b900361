"""card payments (Stripe Checkout), ledger references, monthly spend limit

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("stripe_session_id", sa.String(length=255), nullable=False),
        sa.Column("stripe_payment_intent", sa.String(length=255), nullable=True),
        sa.Column("stripe_charge", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_micro", sa.BigInteger(), nullable=False),
        sa.Column("amount_micro", sa.BigInteger(), nullable=False),
        sa.Column("refunded_micro", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("method", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("stripe_session_id"),
    )
    with op.batch_alter_table("payments") as batch_op:
        batch_op.create_index("ix_payments_account", ["account_id", "id"], unique=False)
        batch_op.create_index("ix_payments_stripe_payment_intent", ["stripe_payment_intent"])
        batch_op.create_index("ix_payments_stripe_charge", ["stripe_charge"])
    with op.batch_alter_table("ledger_entries") as batch_op:
        batch_op.add_column(sa.Column("payment_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("reference", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_ledger_entries_payment_id", ["payment_id"])
        batch_op.create_foreign_key("fk_ledger_payment", "payments", ["payment_id"], ["id"])
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.add_column(sa.Column("spend_limit_micro", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.drop_column("spend_limit_micro")
    with op.batch_alter_table("ledger_entries") as batch_op:
        batch_op.drop_constraint("fk_ledger_payment", type_="foreignkey")
        batch_op.drop_index("ix_ledger_entries_payment_id")
        batch_op.drop_column("reference")
        batch_op.drop_column("payment_id")
    op.drop_table("payments")
