"""Database schema (SQLAlchemy 2 typed models). Every change here needs an Alembic migration.

Repositories query these tables with SQLAlchemy Core for speed; the declarative classes are the single
description of the schema, compared against the migrations by a test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        if dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, typed for Core statements."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Owner(Base):
    __tablename__ = "owners"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str] = mapped_column(String(320), default="")
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Profile(Base):
    __tablename__ = "profiles"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CertificateAuthority(Base):
    __tablename__ = "certificate_authorities"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("certificate_authorities.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    cert_pem: Mapped[str] = mapped_column(Text)
    key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    subject: Mapped[str] = mapped_column(String(500))
    key_algorithm: Mapped[str] = mapped_column(String(20))
    path_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    name_constraints: Mapped[dict[str, Any]] = mapped_column(JSON)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    imported: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Issuer(Base):
    __tablename__ = "issuers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    secrets_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ManagedCertificate(Base):
    __tablename__ = "managed_certificates"
    __table_args__ = (
        Index("ix_managed_certificates_status_not_after", "status", "not_after"),
        Index("ix_managed_certificates_not_after", "not_after"),
        Index("ix_managed_certificates_created_at_id", "created_at", "id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    common_name: Mapped[str] = mapped_column(String(255), default="")
    sans: Mapped[list[str]] = mapped_column(JSON)
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("owners.id", ondelete="SET NULL"), nullable=True)
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), nullable=True)
    tags: Mapped[dict[str, str]] = mapped_column(JSON)
    environment: Mapped[str] = mapped_column(String(64), default="")
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id"), index=True)
    profile_id: Mapped[str] = mapped_column(ForeignKey("profiles.id"), index=True)
    status: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=True)
    current_version_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    not_after: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    renewal_due_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    """When the renewal scan enqueues this certificate (``certctl.domain.renewal``); NULL: never."""
    key_agent_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    """The agent that generates and holds this certificate's private keys; NULL: the server or the
    requester (CSR) does."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CertificateVersion(Base):
    __tablename__ = "certificate_versions"
    __table_args__ = (
        UniqueConstraint("issuer_ca_id", "serial", name="uq_certificate_versions_ca_serial"),
        Index("ix_certificate_versions_ca_revoked_at", "issuer_ca_id", "revoked_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    certificate_id: Mapped[str] = mapped_column(
        ForeignKey("managed_certificates.id", ondelete="CASCADE"), index=True
    )
    issuer_ca_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    serial: Mapped[str] = mapped_column(String(64))
    not_before: Mapped[datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), index=True)
    cert_pem: Mapped[str] = mapped_column(Text)
    chain_pem: Mapped[str] = mapped_column(Text)
    csr_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    key_algorithm: Mapped[str] = mapped_column(String(20))
    key_size: Mapped[int] = mapped_column(Integer)
    key_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    invalidity_date: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class WebSession(Base):
    """A dashboard session. ``id`` is the SHA-256 of the random id the signed cookie carries; ``handle`` is
    the public name used to list and revoke it. The principal is an API key, an OIDC user or the
    break-glass account; ``idp_sid``/``idp_sub`` let the identity provider end it (back-channel logout)."""

    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_principal", "principal_type", "principal_id"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    handle: Mapped[str] = mapped_column(String(32), unique=True)
    principal_type: Mapped[str] = mapped_column(String(20))
    principal_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=True, index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )
    provider_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    idp_sid: Mapped[str | None] = mapped_column(String(255), nullable=True, index=True)
    idp_sub: Mapped[str | None] = mapped_column(String(255), nullable=True)
    csrf_sha256: Mapped[str] = mapped_column(String(64))
    bind_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class WebSessionChange(Base):
    """A short log of sessions ended or changed (``session_id`` NULL: every session's access may have
    changed), which every server process reads each second to drop what it cached. Rows go after ten
    minutes."""

    __tablename__ = "web_session_changes"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class SessionSigningKey(Base):
    """HMAC keys for session cookies, sealed under the master key. One is active; a retired key still
    verifies cookies until ``verify_until`` (the session lifetime after its retirement), then goes."""

    __tablename__ = "session_signing_keys"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    verify_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class OidcProvider(Base):
    """An OpenID Provider operators sign in with. The client secret is sealed under the master key."""

    __tablename__ = "oidc_providers"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    issuer: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    groups_claim: Mapped[str] = mapped_column(String(200), default="groups")
    groups_format: Mapped[str] = mapped_column(String(20), default="list")
    allowed_email_domains: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OidcGroupMapping(Base):
    """Members of ``group`` (as the provider names it) hold ``role`` on a scope while signed in."""

    __tablename__ = "oidc_group_mappings"
    __table_args__ = (
        UniqueConstraint(
            "provider_id", "group_name", "role", "scope_type", "scope_id", name="uq_oidc_group_mappings_entry"
        ),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("oidc_providers.id", ondelete="CASCADE"), index=True)
    group_name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(100))
    scope_type: Mapped[str] = mapped_column(String(20))
    scope_id: Mapped[str] = mapped_column(String(40), default="")
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class User(Base):
    """A person who signed in through an OIDC provider; ``groups`` are those of their latest sign-in."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("provider_id", "subject", name="uq_users_provider_subject"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("oidc_providers.id", ondelete="CASCADE"), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(320), default="")
    name: Mapped[str] = mapped_column(String(200), default="")
    groups: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_login_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OidcLoginState(Base):
    """A sign-in in flight: single use, short-lived, bound to the browser's pre-login cookie. The PKCE
    verifier and the nonce are derived from that cookie, so neither is stored here."""

    __tablename__ = "oidc_login_states"
    state_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_sha256: Mapped[str] = mapped_column(String(64))
    provider_id: Mapped[str] = mapped_column(ForeignKey("oidc_providers.id", ondelete="CASCADE"), index=True)
    next_path: Mapped[str] = mapped_column(String(500), default="/dashboard")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class OidcLogoutJti(Base):
    """Back-channel logout tokens already used: the primary key refuses a replay on every replica."""

    __tablename__ = "oidc_logout_jtis"
    provider_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class OidcFirstAdmin(Base):
    """At most one row, ever: the user the OIDC day-0 path made admin (``slot`` is always 1)."""

    __tablename__ = "oidc_first_admin"
    slot: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40))
    provider_id: Mapped[str] = mapped_column(String(40))
    group_name: Mapped[str] = mapped_column(String(255))
    granted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class BreakGlassAccount(Base):
    """The sealed emergency admin: Argon2id hash, failure counter and timed lockout."""

    __tablename__ = "breakglass_accounts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AuditEvent(Base):
    """Append-only. ``event_hash`` is written with the row; ``seq``/``chain_hash`` once, by the sealer."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_occurred_at", "occurred_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    actor_type: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(80), index=True)
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(200), default="")
    outcome: Mapped[str] = mapped_column(String(20))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    body_sha256: Mapped[str] = mapped_column(String(64), default="")
    latency_ms: Mapped[float] = mapped_column(default=0.0)
    request_id: Mapped[str] = mapped_column(String(40), default="")
    event_hash: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True, unique=True)
    chain_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuditChainHead(Base):
    """One row: the last sealed position of the audit hash chain. Only the sealer locks it."""

    __tablename__ = "audit_chain_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    chain_hash: Mapped[str] = mapped_column(String(64))


class Role(Base):
    """A custom role (the built-in ones live in code: ``certctl.domain.rbac.BUILTIN_ROLES``)."""

    __tablename__ = "roles"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    permissions: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RoleGrant(Base):
    """A role held by a principal, globally or on one profile or issuer, until an optional expiry."""

    __tablename__ = "role_grants"
    __table_args__ = (
        UniqueConstraint(
            "principal_type",
            "principal_id",
            "role",
            "scope_type",
            "scope_id",
            name="uq_role_grants_principal_role",
        ),
        Index("ix_role_grants_principal", "principal_type", "principal_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    principal_type: Mapped[str] = mapped_column(String(20))
    principal_id: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(100), index=True)
    scope_type: Mapped[str] = mapped_column(String(20))
    scope_id: Mapped[str] = mapped_column(String(40), default="")
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    granted_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Approval(Base):
    """A four-eyes request: an action held until a different actor approves or rejects it."""

    __tablename__ = "approvals"
    __table_args__ = (Index("ix_approvals_status_expires_at", "status", "expires_at"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    profile_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    issuer_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    resource_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    summary: Mapped[str] = mapped_column(String(500), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(200))
    requested_by_id: Mapped[str] = mapped_column(String(64))
    request_note: Mapped[str] = mapped_column(Text, default="")
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_by_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decision_note: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Policy(Base):
    """Issuance rules evaluated before anything is signed; each rule blocks or only warns."""

    __tablename__ = "policies"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CrlState(Base):
    """Per issuing CA: the CRL number sequence, the latest full and delta CRL (DER, served as is), the
    base the deltas refer to, and whether a revocation since then awaits a new CRL (RFC 5280 §5.2.3)."""

    __tablename__ = "crl_state"
    ca_id: Mapped[str] = mapped_column(
        ForeignKey("certificate_authorities.id", ondelete="CASCADE"), primary_key=True
    )
    last_number: Mapped[int] = mapped_column(BigInteger, default=0)
    full_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    full_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    full_this_update: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    full_next_update: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    delta_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    delta_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    delta_this_update: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    delta_next_update: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    base_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    base_this_update: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    stale_since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Job(Base):
    """A durable unit of background work. ``dedup_key`` makes enqueueing idempotent; ``locked_by`` and
    ``locked_until`` are the lease of the worker running it, so a job stuck Running is recovered."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_run_after", "status", "run_after"),
        Index("ix_jobs_status_locked_until", "status", "locked_until"),
        Index("ix_jobs_created_at_id", "created_at", "id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    certificate_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    version_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime] = mapped_column(UtcDateTime)
    locked_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SchedulerLease(Base):
    """Leader election for periodic work: one row per task group, held until ``expires_at``."""

    __tablename__ = "scheduler_leases"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OcspResponder(Base):
    """A delegated OCSP signing certificate of one issuing CA (RFC 6960 §4.2.2.2): EKU id-kp-OCSPSigning,
    id-pkix-ocsp-nocheck, short validity; the private key is sealed with the master key."""

    __tablename__ = "ocsp_responders"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    ca_id: Mapped[str] = mapped_column(
        ForeignKey("certificate_authorities.id", ondelete="CASCADE"), index=True
    )
    cert_pem: Mapped[str] = mapped_column(Text)
    key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(UtcDateTime)
    not_after: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class NotificationChannel(Base):
    """A configured notifier (email, Slack, Teams, PagerDuty, OpsGenie, webhook). ``options`` are shown;
    ``secrets_sealed`` (passwords, webhook URLs, keys) is sealed with the master key, never shown."""

    __tablename__ = "notification_channels"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    secrets_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class NotificationRule(Base):
    """Routing: events of these types (all when empty) at or above a severity, optionally only for one
    team or owner, go to these channels."""

    __tablename__ = "notification_rules"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    event_types: Mapped[list[str]] = mapped_column(JSON)
    min_severity: Mapped[str] = mapped_column(String(20))
    channel_ids: Mapped[list[str]] = mapped_column(JSON)
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), nullable=True)
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class NotificationCursor(Base):
    """Progress of the leader's periodic notification work (audit tail, expiry scan, digest)."""

    __tablename__ = "notification_cursors"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    position: Mapped[datetime] = mapped_column(UtcDateTime)


class Agent(Base):
    """A host running ``certctl agent``. Its credential is stored as SHA-256 only; after a rotation the
    previous one stays valid for a short grace period so a lost response does not lock the agent out."""

    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    proxy: Mapped[bool] = mapped_column(Boolean, default=False)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    os: Mapped[str] = mapped_column(String(100), default="")
    arch: Mapped[str] = mapped_column(String(50), default="")
    version: Mapped[str] = mapped_column(String(50), default="")
    credential_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    previous_credential_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    credential_rotated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    retired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AgentEnrolmentToken(Base):
    """A one-time token that lets one host enrol as an agent; SHA-256 at rest, single use, expires."""

    __tablename__ = "agent_enrolment_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    proxy: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


class Target(Base):
    """Where certificates get deployed, served by one agent. ``options`` are shown; ``secrets_sealed``
    (keystore passwords, SSH keys) is sealed with the master key and decrypted only for that agent."""

    __tablename__ = "targets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    secrets_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    check_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_check: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """The agent's last test of this target: ``{"ok": bool, "message": str, "at": iso time}``."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CertificateTarget(Base):
    """A certificate is deployed to this target after every issuance and renewal."""

    __tablename__ = "certificate_targets"
    certificate_id: Mapped[str] = mapped_column(
        ForeignKey("managed_certificates.id", ondelete="CASCADE"), primary_key=True
    )
    target_id: Mapped[str] = mapped_column(
        ForeignKey("targets.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Deployment(Base):
    """One certificate version going to one target: the agent's work queue and the deployment history.
    ``version_id`` NULL means the agent must first generate a key and have it certified."""

    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_agent_id_status", "agent_id", "status"),
        Index("ix_deployments_certificate_id_created_at", "certificate_id", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    certificate_id: Mapped[str] = mapped_column(ForeignKey("managed_certificates.id", ondelete="CASCADE"))
    target_id: Mapped[str] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"), index=True)
    agent_id: Mapped[str] = mapped_column(String(40))
    version_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reason: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    served_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    steps: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AcmeAccount(Base):
    """An ACME account (RFC 8555 §7.1.2): a client's public key (JWK) and its contacts. The RFC 7638
    thumbprint is unique, so one key is one account."""

    __tablename__ = "acme_accounts"
    __table_args__ = (
        # accounts created from one client address lately (the per-address limit)
        Index("ix_acme_accounts_created_from_created_at", "created_from", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    profile: Mapped[str] = mapped_column(String(200))
    jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    jwk_thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    contact: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_from: Mapped[str] = mapped_column(String(64), default="", server_default="")
    """The client address the account was created from (an IPv6 address as its /64); empty when
    unknown."""


class AcmeOrder(Base):
    """An ACME order (RFC 8555 §7.1.3). ``certificate_id``/``version_id`` name the managed certificate it
    produced; the certificate is named ``acme-<order id>`` (also when an approval issues it later)."""

    __tablename__ = "acme_orders"
    __table_args__ = (
        # an account's recent orders (the per-account limit, the orders list) without its whole history
        Index("ix_acme_orders_account_id_created_at", "account_id", "created_at"),
        # "did this account order that certificate": both columns in the index, whatever the statistics
        Index("ix_acme_orders_certificate_id_account_id", "certificate_id", "account_id"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("acme_accounts.id", ondelete="CASCADE"))
    profile: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    identifiers: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    certificate_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    version_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    approval_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    replaces: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AcmeAuthorization(Base):
    """Proof of control of one identifier for one order (RFC 8555 §7.1.4); not reused across orders."""

    __tablename__ = "acme_authorizations"
    __table_args__ = (
        # a name's failed or valid authorizations (the failure limit, reuse), not the account's history
        Index("ix_acme_authorizations_value_status_created_at", "identifier_value", "status", "created_at"),
        # the recent orders naming a registered domain, across accounts (the per-domain limit)
        Index("ix_acme_authorizations_registered_domain_created_at", "registered_domain", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("acme_orders.id", ondelete="CASCADE"), index=True)
    identifier_type: Mapped[str] = mapped_column(String(10))
    identifier_value: Mapped[str] = mapped_column(String(255))
    wildcard: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    registered_domain: Mapped[str] = mapped_column(String(255), default="", server_default="")
    """The identifier's registered domain (public suffix plus one label; the name itself when it is a
    public suffix; an IP address as itself)."""


class AcmeChallenge(Base):
    """One way to prove an authorization (RFC 8555 §8). ``updated_at`` of a ``processing`` challenge tells
    the sweep when a validation was lost with its process, so it can be run again."""

    __tablename__ = "acme_challenges"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    authorization_id: Mapped[str] = mapped_column(
        ForeignKey("acme_authorizations.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(20))
    token: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    validated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IssuerRenewalDeadline(Base):
    """A mass re-issuance request (RFC 9773 §4.2): every certificate of the issuer issued before
    ``requested_at`` gets an ARI window that ends by ``renew_by``. One row per issuer; a new request
    replaces the old one."""

    __tablename__ = "issuer_renewal_deadlines"
    issuer_id: Mapped[str] = mapped_column(ForeignKey("issuers.id", ondelete="CASCADE"), primary_key=True)
    renew_by: Mapped[datetime] = mapped_column(UtcDateTime)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    requested_by: Mapped[str] = mapped_column(String(200))
    explanation_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    """Shown to ACME clients as the window's ``explanationURL`` (RFC 9773 §4.2)."""


class AcmeUsedNonce(Base):
    """Nonces already spent (RFC 8555 §6.5): the primary key makes a replay fail on insert, on every
    replica. Rows go once the nonce would be refused as too old anyway."""

    __tablename__ = "acme_used_nonces"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class AcmeEabKey(Base):
    """An external account binding key (RFC 8555 §7.3.4) for one profile's ACME directory: the HMAC
    key is sealed under the master key; ``account_id`` is set once, when an account binds it."""

    __tablename__ = "acme_eab_keys"
    kid: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    profile: Mapped[str] = mapped_column(String(200), index=True)
    hmac_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    account_id: Mapped[str | None] = mapped_column(String(40), nullable=True, unique=True)
    bound_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
