"""The log of ended or changed dashboard sessions that server processes read to keep their caches true.

Revision ID: 2026_11_28_session_changes
Revises: 2026_11_28_identity
Create Date: 2026-11-28 23:55:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_session_changes"
down_revision = "2026_11_28_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_session_changes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_web_session_changes")),
    )
    with op.batch_alter_table("web_session_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_session_changes_changed_at"), ["changed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("web_session_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_session_changes_changed_at"))
    op.drop_table("web_session_changes")
