"""ACME external account binding keys (RFC 8555 §7.3.4).

Revision ID: 2026_11_28_acme_eab
Revises: 2026_11_28_acme_ari
Create Date: 2026-11-28 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_acme_eab"
down_revision = "2026_11_28_acme_ari"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_eab_keys",
        sa.Column("kid", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("profile", sa.String(length=200), nullable=False),
        sa.Column("hmac_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("account_id", sa.String(length=40), nullable=True),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_acme_eab_keys")),
        sa.UniqueConstraint("account_id", name=op.f("uq_acme_eab_keys_account_id")),
    )
    op.create_index(op.f("ix_acme_eab_keys_profile"), "acme_eab_keys", ["profile"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_acme_eab_keys_profile"), table_name="acme_eab_keys")
    op.drop_table("acme_eab_keys")
