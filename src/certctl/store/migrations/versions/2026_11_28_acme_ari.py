"""ACME Renewal Information (RFC 9773): per-issuer renew-by deadlines and lookups of ``replaces``.

Revision ID: 2026_11_28_acme_ari
Revises: 2026_11_28_acme
Create Date: 2026-11-28 21:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_acme_ari"
down_revision = "2026_11_28_acme"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issuer_renewal_deadlines",
        sa.Column("issuer_id", sa.String(length=40), nullable=False),
        sa.Column("renew_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["issuer_id"],
            ["issuers.id"],
            name=op.f("fk_issuer_renewal_deadlines_issuer_id_issuers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("issuer_id", name=op.f("pk_issuer_renewal_deadlines")),
    )
    op.create_index(op.f("ix_acme_orders_replaces"), "acme_orders", ["replaces"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_acme_orders_replaces"), table_name="acme_orders")
    op.drop_table("issuer_renewal_deadlines")
