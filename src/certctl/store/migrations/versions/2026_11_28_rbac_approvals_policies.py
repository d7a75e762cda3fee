"""Roles and scoped, time-bound grants (API keys' roles become global grants); approvals; policies.

Revision ID: 2026_11_28_rbac
Revises: 2026_11_28_initial
Create Date: 2026-11-28 16:47:36.410336
"""

from __future__ import annotations

import json
import secrets

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_rbac"
down_revision = "2026_11_28_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "approvals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("profile_id", sa.String(length=40), nullable=True),
        sa.Column("issuer_id", sa.String(length=40), nullable=True),
        sa.Column("resource_id", sa.String(length=40), nullable=True),
        sa.Column("summary", sa.String(length=500), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_by_id", sa.String(length=64), nullable=False),
        sa.Column("request_note", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_by_id", sa.String(length=64), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
    )
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approvals_profile_id"), ["profile_id"], unique=False)
        batch_op.create_index("ix_approvals_status_expires_at", ["status", "expires_at"], unique=False)

    op.create_table(
        "policies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
        sa.UniqueConstraint("name", name=op.f("uq_policies_name")),
    )
    op.create_table(
        "role_grants",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("principal_type", sa.String(length=20), nullable=False),
        sa.Column("principal_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("scope_type", sa.String(length=20), nullable=False),
        sa.Column("scope_id", sa.String(length=40), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("granted_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_grants")),
        sa.UniqueConstraint(
            "principal_type",
            "principal_id",
            "role",
            "scope_type",
            "scope_id",
            name="uq_role_grants_principal_role",
        ),
    )
    with op.batch_alter_table("role_grants", schema=None) as batch_op:
        batch_op.create_index("ix_role_grants_principal", ["principal_type", "principal_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_role_grants_role"), ["role"], unique=False)

    op.create_table(
        "roles",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roles")),
        sa.UniqueConstraint("name", name=op.f("uq_roles_name")),
    )
    _roles_to_grants()
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("roles")


def _roles_to_grants() -> None:
    """Each role an API key held becomes a global grant of that role to the key."""
    connection = op.get_bind()
    keys = connection.execute(sa.text("SELECT id, roles, created_by, created_at FROM api_keys")).all()
    grants = sa.table(
        "role_grants",
        sa.column("id"),
        sa.column("principal_type"),
        sa.column("principal_id"),
        sa.column("role"),
        sa.column("scope_type"),
        sa.column("scope_id"),
        sa.column("expires_at"),
        sa.column("granted_by"),
        sa.column("created_at"),
    )
    rows = []
    for key_id, roles, created_by, created_at in keys:
        for role in json.loads(roles) if isinstance(roles, str) else roles:
            rows.append(
                {
                    "id": f"grant_{secrets.token_hex(10)}",
                    "principal_type": "api_key",
                    "principal_id": key_id,
                    "role": role,
                    "scope_type": "global",
                    "scope_id": "",
                    "expires_at": None,
                    "granted_by": created_by,
                    "created_at": created_at,
                }
            )
    if rows:
        op.bulk_insert(grants, rows)


def downgrade() -> None:

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("roles", sa.JSON(), nullable=False, server_default="[]"))

    op.drop_table("roles")
    with op.batch_alter_table("role_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_role_grants_role"))
        batch_op.drop_index("ix_role_grants_principal")

    op.drop_table("role_grants")
    op.drop_table("policies")
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_approvals_status_expires_at")
        batch_op.drop_index(batch_op.f("ix_approvals_profile_id"))

    op.drop_table("approvals")
