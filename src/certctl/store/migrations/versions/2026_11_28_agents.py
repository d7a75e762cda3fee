"""Agents, their enrolment tokens, deployment targets, certificate-target mappings and deployments.

Revision ID: 2026_11_28_agents
Revises: 2026_11_28_notifications
Create Date: 2026-11-28 18:50:22.578210
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_agents"
down_revision = "2026_11_28_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_enrolment_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("proxy", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("agent_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_enrolment_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_agent_enrolment_tokens_token_sha256")),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("proxy", sa.Boolean(), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("os", sa.String(length=100), nullable=False),
        sa.Column("arch", sa.String(length=50), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column("credential_sha256", sa.String(length=64), nullable=False),
        sa.Column("previous_credential_sha256", sa.String(length=64), nullable=True),
        sa.Column("previous_valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("credential_rotated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("credential_sha256", name=op.f("uq_agents_credential_sha256")),
        sa.UniqueConstraint("name", name=op.f("uq_agents_name")),
    )
    op.create_index(
        op.f("ix_agents_previous_credential_sha256"), "agents", ["previous_credential_sha256"], unique=False
    )

    op.create_table(
        "targets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("secrets_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("check_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_check", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name=op.f("fk_targets_agent_id_agents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_targets")),
        sa.UniqueConstraint("name", name=op.f("uq_targets_name")),
    )
    op.create_index(op.f("ix_targets_agent_id"), "targets", ["agent_id"], unique=False)

    op.create_table(
        "certificate_targets",
        sa.Column("certificate_id", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["managed_certificates.id"],
            name=op.f("fk_certificate_targets_certificate_id_managed_certificates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["targets.id"],
            name=op.f("fk_certificate_targets_target_id_targets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("certificate_id", "target_id", name=op.f("pk_certificate_targets")),
    )
    op.create_index(
        op.f("ix_certificate_targets_target_id"), "certificate_targets", ["target_id"], unique=False
    )

    op.create_table(
        "deployments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("certificate_id", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.String(length=40), nullable=False),
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column("version_id", sa.String(length=40), nullable=True),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("served_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["managed_certificates.id"],
            name=op.f("fk_deployments_certificate_id_managed_certificates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"], ["targets.id"], name=op.f("fk_deployments_target_id_targets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_index("ix_deployments_agent_id_status", "deployments", ["agent_id", "status"], unique=False)
    op.create_index(
        "ix_deployments_certificate_id_created_at",
        "deployments",
        ["certificate_id", "created_at"],
        unique=False,
    )
    op.create_index(op.f("ix_deployments_target_id"), "deployments", ["target_id"], unique=False)

    op.add_column("managed_certificates", sa.Column("key_agent_id", sa.String(length=40), nullable=True))
    op.create_index(
        op.f("ix_managed_certificates_key_agent_id"), "managed_certificates", ["key_agent_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_managed_certificates_key_agent_id"), table_name="managed_certificates")
    op.drop_column("managed_certificates", "key_agent_id")

    op.drop_index(op.f("ix_deployments_target_id"), table_name="deployments")
    op.drop_index("ix_deployments_certificate_id_created_at", table_name="deployments")
    op.drop_index("ix_deployments_agent_id_status", table_name="deployments")

    op.drop_table("deployments")
    op.drop_index(op.f("ix_certificate_targets_target_id"), table_name="certificate_targets")

    op.drop_table("certificate_targets")
    op.drop_index(op.f("ix_targets_agent_id"), table_name="targets")

    op.drop_table("targets")
    op.drop_index(op.f("ix_agents_previous_credential_sha256"), table_name="agents")

    op.drop_table("agents")
    op.drop_table("agent_enrolment_tokens")
