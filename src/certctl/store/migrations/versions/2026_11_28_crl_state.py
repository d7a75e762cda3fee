"""CRL state per issuing CA (number sequence, latest full and delta CRL); invalidity dates on versions.

Revision ID: 2026_11_28_crl_state
Revises: 2026_11_28_rbac
Create Date: 2026-11-28 17:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_crl_state"
down_revision = "2026_11_28_rbac"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crl_state",
        sa.Column("ca_id", sa.String(length=40), nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.Column("full_number", sa.BigInteger(), nullable=True),
        sa.Column("full_der", sa.LargeBinary(), nullable=True),
        sa.Column("full_this_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("full_next_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delta_number", sa.BigInteger(), nullable=True),
        sa.Column("delta_der", sa.LargeBinary(), nullable=True),
        sa.Column("delta_this_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delta_next_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("base_number", sa.BigInteger(), nullable=True),
        sa.Column("base_this_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stale_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca_id"],
            ["certificate_authorities.id"],
            name=op.f("fk_crl_state_ca_id_certificate_authorities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ca_id", name=op.f("pk_crl_state")),
    )
    with op.batch_alter_table("certificate_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invalidity_date", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_certificate_versions_ca_revoked_at", ["issuer_ca_id", "revoked_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("certificate_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_certificate_versions_ca_revoked_at")
        batch_op.drop_column("invalidity_date")
    op.drop_table("crl_state")
