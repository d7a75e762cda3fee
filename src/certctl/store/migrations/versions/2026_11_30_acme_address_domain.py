"""What the ACME limits per client address and per registered domain count: the address an account was
created from, the registered domain of each authorization's name, each indexed with its creation time.

Revision ID: 2026_11_30_acme_address_domain
Revises: 2026_11_29_acme_indexes
Create Date: 2026-11-30 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_30_acme_address_domain"
down_revision = "2026_11_29_acme_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("acme_accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("created_from", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.create_index(
            batch_op.f("ix_acme_accounts_created_from_created_at"),
            ["created_from", "created_at"],
            unique=False,
        )
    with op.batch_alter_table("acme_authorizations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("registered_domain", sa.String(length=255), server_default="", nullable=False)
        )
        batch_op.create_index(
            batch_op.f("ix_acme_authorizations_registered_domain_created_at"),
            ["registered_domain", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("acme_authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_acme_authorizations_registered_domain_created_at"))
        batch_op.drop_column("registered_domain")
    with op.batch_alter_table("acme_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_acme_accounts_created_from_created_at"))
        batch_op.drop_column("created_from")
