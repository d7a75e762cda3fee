"""Indexes that keep the per-order ACME reads independent of an account's history: an account's orders
by creation time, orders by certificate and account, a name's authorizations by status and creation
time.

Revision ID: 2026_11_29_acme_indexes
Revises: 2026_11_28_session_changes
Create Date: 2026-11-29 09:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "2026_11_29_acme_indexes"
down_revision = "2026_11_28_session_changes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("acme_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_acme_orders_account_id"))
        batch_op.create_index(
            batch_op.f("ix_acme_orders_account_id_created_at"), ["account_id", "created_at"], unique=False
        )
        batch_op.drop_index(batch_op.f("ix_acme_orders_certificate_id"))
        batch_op.create_index(
            batch_op.f("ix_acme_orders_certificate_id_account_id"),
            ["certificate_id", "account_id"],
            unique=False,
        )
    with op.batch_alter_table("acme_authorizations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_acme_authorizations_value_status_created_at"),
            ["identifier_value", "status", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("acme_authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_acme_authorizations_value_status_created_at"))
    with op.batch_alter_table("acme_orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_acme_orders_certificate_id_account_id"))
        batch_op.create_index(batch_op.f("ix_acme_orders_certificate_id"), ["certificate_id"], unique=False)
        batch_op.drop_index(batch_op.f("ix_acme_orders_account_id_created_at"))
        batch_op.create_index(batch_op.f("ix_acme_orders_account_id"), ["account_id"], unique=False)
