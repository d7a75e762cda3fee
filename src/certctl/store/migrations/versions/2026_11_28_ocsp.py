"""Delegated OCSP responder certificates per issuing CA (RFC 6960 §4.2.2.2), keys sealed at rest.

Revision ID: 2026_11_28_ocsp
Revises: 2026_11_28_jobs
Create Date: 2026-11-28 18:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_ocsp"
down_revision = "2026_11_28_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ocsp_responders",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("ca_id", sa.String(length=40), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=False),
        sa.Column("key_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ca_id"],
            ["certificate_authorities.id"],
            name=op.f("fk_ocsp_responders_ca_id_certificate_authorities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ocsp_responders")),
    )
    op.create_index(op.f("ix_ocsp_responders_ca_id"), "ocsp_responders", ["ca_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ocsp_responders_ca_id"), table_name="ocsp_responders")
    op.drop_table("ocsp_responders")
