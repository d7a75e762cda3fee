"""ACME server (RFC 8555): accounts, orders, authorizations, challenges and spent nonces.

Revision ID: 2026_11_28_acme
Revises: 2026_11_28_agents
Create Date: 2026-11-28 20:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_acme"
down_revision = "2026_11_28_agents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "acme_accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("profile", sa.String(length=200), nullable=False),
        sa.Column("jwk", sa.JSON(), nullable=False),
        sa.Column("jwk_thumbprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("contact", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acme_accounts")),
        sa.UniqueConstraint("jwk_thumbprint", name=op.f("uq_acme_accounts_jwk_thumbprint")),
    )
    op.create_table(
        "acme_used_nonces",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_acme_used_nonces")),
    )
    op.create_index(op.f("ix_acme_used_nonces_expires_at"), "acme_used_nonces", ["expires_at"], unique=False)
    op.create_table(
        "acme_orders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("profile", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("identifiers", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("certificate_id", sa.String(length=40), nullable=True),
        sa.Column("version_id", sa.String(length=40), nullable=True),
        sa.Column("approval_id", sa.String(length=40), nullable=True),
        sa.Column("replaces", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["acme_accounts.id"],
            name=op.f("fk_acme_orders_account_id_acme_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acme_orders")),
    )
    op.create_index(op.f("ix_acme_orders_account_id"), "acme_orders", ["account_id"], unique=False)
    op.create_index(op.f("ix_acme_orders_certificate_id"), "acme_orders", ["certificate_id"], unique=False)
    op.create_index(op.f("ix_acme_orders_expires_at"), "acme_orders", ["expires_at"], unique=False)
    op.create_table(
        "acme_authorizations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("identifier_type", sa.String(length=10), nullable=False),
        sa.Column("identifier_value", sa.String(length=255), nullable=False),
        sa.Column("wildcard", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["acme_orders.id"],
            name=op.f("fk_acme_authorizations_order_id_acme_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acme_authorizations")),
    )
    op.create_index(
        op.f("ix_acme_authorizations_order_id"), "acme_authorizations", ["order_id"], unique=False
    )
    op.create_table(
        "acme_challenges",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("authorization_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["authorization_id"],
            ["acme_authorizations.id"],
            name=op.f("fk_acme_challenges_authorization_id_acme_authorizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_acme_challenges")),
    )
    op.create_index(
        op.f("ix_acme_challenges_authorization_id"), "acme_challenges", ["authorization_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_acme_challenges_authorization_id"), table_name="acme_challenges")
    op.drop_table("acme_challenges")
    op.drop_index(op.f("ix_acme_authorizations_order_id"), table_name="acme_authorizations")
    op.drop_table("acme_authorizations")
    op.drop_index(op.f("ix_acme_orders_expires_at"), table_name="acme_orders")
    op.drop_index(op.f("ix_acme_orders_certificate_id"), table_name="acme_orders")
    op.drop_index(op.f("ix_acme_orders_account_id"), table_name="acme_orders")
    op.drop_table("acme_orders")
    op.drop_index(op.f("ix_acme_used_nonces_expires_at"), table_name="acme_used_nonces")
    op.drop_table("acme_used_nonces")
    op.drop_table("acme_accounts")
