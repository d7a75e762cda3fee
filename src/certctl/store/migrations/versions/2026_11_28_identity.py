"""Identity: OIDC providers, group mappings and users; signed server-side sessions; break-glass.

``web_sessions`` is recreated rather than altered: sessions are short-lived, so an upgrade signs every
dashboard user out once.

Revision ID: 2026_11_28_identity
Revises: 2026_11_28_acme_eab
Create Date: 2026-11-28 22:10:44.565418
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_28_identity"
down_revision = "2026_11_28_acme_eab"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "breakglass_accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_breakglass_accounts")),
        sa.UniqueConstraint("username", name=op.f("uq_breakglass_accounts_username")),
    )
    op.create_table(
        "oidc_first_admin",
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("group_name", sa.String(length=255), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("slot", name=op.f("pk_oidc_first_admin")),
    )
    op.create_table(
        "oidc_logout_jtis",
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider_id", "jti", name=op.f("pk_oidc_logout_jtis")),
    )
    with op.batch_alter_table("oidc_logout_jtis", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_logout_jtis_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "oidc_providers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("issuer", sa.String(length=500), nullable=False),
        sa.Column("client_id", sa.String(length=255), nullable=False),
        sa.Column("client_secret_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("groups_claim", sa.String(length=200), nullable=False),
        sa.Column("groups_format", sa.String(length=20), nullable=False),
        sa.Column("allowed_email_domains", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_providers")),
        sa.UniqueConstraint("name", name=op.f("uq_oidc_providers_name")),
    )
    op.create_table(
        "session_signing_keys",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verify_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_signing_keys")),
    )
    op.create_table(
        "oidc_group_mappings",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("group_name", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("scope_type", sa.String(length=20), nullable=False),
        sa.Column("scope_id", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["oidc_providers.id"],
            name=op.f("fk_oidc_group_mappings_provider_id_oidc_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oidc_group_mappings")),
        sa.UniqueConstraint(
            "provider_id", "group_name", "role", "scope_type", "scope_id", name="uq_oidc_group_mappings_entry"
        ),
    )
    with op.batch_alter_table("oidc_group_mappings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_group_mappings_provider_id"), ["provider_id"], unique=False)

    op.create_table(
        "oidc_login_states",
        sa.Column("state_sha256", sa.String(length=64), nullable=False),
        sa.Column("browser_sha256", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("next_path", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["oidc_providers.id"],
            name=op.f("fk_oidc_login_states_provider_id_oidc_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("state_sha256", name=op.f("pk_oidc_login_states")),
    )
    with op.batch_alter_table("oidc_login_states", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_oidc_login_states_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_oidc_login_states_provider_id"), ["provider_id"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["oidc_providers.id"],
            name=op.f("fk_users_provider_id_oidc_providers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("provider_id", "subject", name="uq_users_provider_subject"),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_provider_id"), ["provider_id"], unique=False)

    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_sessions_api_key_id"))
    op.drop_table("web_sessions")
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("handle", sa.String(length=32), nullable=False),
        sa.Column("principal_type", sa.String(length=20), nullable=False),
        sa.Column("principal_id", sa.String(length=64), nullable=False),
        sa.Column("api_key_id", sa.String(length=40), nullable=True),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("provider_id", sa.String(length=40), nullable=True),
        sa.Column("idp_sid", sa.String(length=255), nullable=True),
        sa.Column("idp_sub", sa.String(length=255), nullable=True),
        sa.Column("csrf_sha256", sa.String(length=64), nullable=False),
        sa.Column("bind_sha256", sa.String(length=64), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_web_sessions_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_web_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("handle", name=op.f("uq_web_sessions_handle")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_api_key_id"), ["api_key_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_sessions_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_sessions_provider_id"), ["provider_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_sessions_idp_sid"), ["idp_sid"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_sessions_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index("ix_web_sessions_principal", ["principal_type", "principal_id"], unique=False)


def downgrade() -> None:
    op.drop_table("web_sessions")
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("api_key_id", sa.String(length=40), nullable=False),
        sa.Column("csrf_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_web_sessions_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
    )
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_api_key_id"), ["api_key_id"], unique=False)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_provider_id"))

    op.drop_table("users")
    with op.batch_alter_table("oidc_login_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_login_states_provider_id"))
        batch_op.drop_index(batch_op.f("ix_oidc_login_states_expires_at"))

    op.drop_table("oidc_login_states")
    with op.batch_alter_table("oidc_group_mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_group_mappings_provider_id"))

    op.drop_table("oidc_group_mappings")
    op.drop_table("session_signing_keys")
    op.drop_table("oidc_providers")
    with op.batch_alter_table("oidc_logout_jtis", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oidc_logout_jtis_expires_at"))

    op.drop_table("oidc_logout_jtis")
    op.drop_table("oidc_first_admin")
    op.drop_table("breakglass_accounts")
