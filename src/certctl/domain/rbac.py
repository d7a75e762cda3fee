"""The permission catalogue, the built-in roles, and how grants decide access.

This module is the single source of truth: routes declare permissions from :data:`PERMISSIONS`, the
migrations and ``docs/operator/rbac.md`` (generated, checked by a test) follow it, and the dashboard and
``GET /api/v1/auth/permissions`` list it.

A principal (an API key today) holds *grants*: a role, a scope (global, one profile, or one issuer) and an
optional expiry. Only *scopable* permissions (certificates, profiles, issuers, approvals) can be granted
narrower than global; a scoped grant confers nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType


def _verbs(area: str, verbs: str, what: str) -> dict[str, str]:
    return {f"{area}.{verb}": f"{verb.replace('_', ' ').capitalize()} {what}" for verb in verbs.split()}


PERMISSIONS: Mapping[str, str] = MappingProxyType(
    {
        "cert.read": "List and read managed certificates and their versions",
        "cert.issue": "Create managed certificates and issue them",
        "cert.edit": "Change a managed certificate's metadata",
        "cert.renew": "Renew a certificate now",
        "cert.revoke": "Revoke a certificate",
        "cert.bulk_revoke": "Revoke many certificates at once",
        "cert.delete": "Archive a managed certificate",
        "cert.export": "Export certificates with their private keys (PEM, PKCS#12)",
        **_verbs("profile", "read create edit delete", "certificate profiles"),
        **_verbs("issuer", "read create edit delete", "issuers (and test them)"),
        **_verbs("target", "read create edit delete", "deployment targets"),
        **_verbs("agent", "read edit retire", "agents"),
        "agent.heartbeat": "An agent reports that it is alive (its own record only)",
        "agent.job.poll": "An agent fetches its own pending work",
        "agent.job.complete": "An agent reports the outcome of its own work",
        "agent.report": "An agent reports what it discovered on its host",
        **_verbs("job", "read cancel", "jobs"),
        **_verbs("approval", "read approve reject", "four-eyes approval requests"),
        **_verbs("policy", "read create edit delete", "issuance policies"),
        **_verbs("team", "read create edit delete", "teams"),
        **_verbs("owner", "read create edit delete", "owners"),
        **_verbs("notification", "read edit", "notification channels and routing"),
        **_verbs("discovery", "read edit", "discovery scans and their findings"),
        "audit.read": "Read the audit trail",
        "audit.export": "Export the audit trail",
        **_verbs("auth.role", "read create edit delete", "roles"),
        "auth.role.assign": "Grant and revoke roles (never beyond what the granter holds)",
        **_verbs("auth.key", "read create rotate revoke", "API keys"),
        "auth.key.rotate_self": "Rotate one's own API key",
        **_verbs("auth.session", "read revoke", "dashboard sessions"),
        **_verbs("auth.oidc", "read edit", "OpenID Connect providers and group mappings"),
        **_verbs("auth.user", "read edit", "federated users"),
        "auth.bootstrap.use": "Use the day-0 bootstrap",
        **_verbs("auth.breakglass", "read edit", "the break-glass account"),
        "crl.admin": "Regenerate and configure CRLs",
        "ocsp.admin": "Configure the OCSP responder",
        "acme.admin": "Configure the ACME server (EAB keys, profiles)",
        "scep.admin": "Configure the SCEP server",
        "est.admin": "Configure the EST server",
        "ca.read": "Read the local CA hierarchy",
        "ca.hierarchy.manage": "Create, import, drain and retire CAs of the local hierarchy",
        "stats.read": "Read inventory statistics",
        "metrics.read": "Scrape Prometheus metrics",
    }
)

SCOPABLE_PREFIXES = ("cert.", "profile.", "issuer.", "approval.")


def is_scopable(permission: str) -> bool:
    return permission.startswith(SCOPABLE_PREFIXES)


_ALL = frozenset(PERMISSIONS)
_READS = frozenset(
    p
    for p in _ALL
    if p.endswith(".read") and not p.startswith(("auth.", "audit.")) and not p.startswith("agent.job")
)
_AGENT_OWN = frozenset({"agent.heartbeat", "agent.job.poll", "agent.job.complete", "agent.report"})
_IDENTITY_ADMIN = frozenset(p for p in _ALL if p.startswith("auth."))
_OPERATOR = (_ALL - _IDENTITY_ADMIN - _AGENT_OWN - {"audit.export"}) | {"auth.key.rotate_self"}
DESTRUCTIVE = frozenset(
    {
        "cert.revoke",
        "cert.bulk_revoke",
        "cert.delete",
        "profile.delete",
        "issuer.delete",
        "target.delete",
        "team.delete",
        "owner.delete",
        "policy.delete",
        "agent.retire",
        "job.cancel",
        "ca.hierarchy.manage",
    }
)

BUILTIN_ROLES: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "admin": _ALL,
        "operator": _OPERATOR - {"auth.key.rotate_self"},
        "viewer": _READS,
        "agent": _AGENT_OWN,
        "mcp": _OPERATOR - DESTRUCTIVE - {"auth.key.rotate_self"},
        "cli": _OPERATOR,
        "auditor": frozenset({"audit.read", "audit.export"}),
    }
)
BUILTIN_DESCRIPTIONS: Mapping[str, str] = MappingProxyType(
    {
        "admin": "Everything, including who may do what",
        "operator": "The certificate lifecycle and every resource; no identity or role management",
        "viewer": "Read-only; no audit trail",
        "agent": "Only an agent's own endpoints",
        "mcp": "Operator without destructive verbs, for AI assistants over MCP",
        "cli": "Operator plus rotating its own key",
        "auditor": "Read and export the audit trail, nothing else",
    }
)
DEFAULT_ROLES = BUILTIN_ROLES


class ScopeType(StrEnum):
    GLOBAL = "global"
    PROFILE = "profile"
    ISSUER = "issuer"


@dataclass(frozen=True)
class Grant:
    role: str
    permissions: frozenset[str]
    scope: ScopeType = ScopeType.GLOBAL
    scope_id: str | None = None
    expires_at: datetime | None = None

    def live_at(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now

    def covers(self, *, profile_id: str | None, issuer_id: str | None) -> bool:
        if self.scope == ScopeType.GLOBAL:
            return True
        if self.scope == ScopeType.PROFILE:
            return profile_id is not None and profile_id == self.scope_id
        return issuer_id is not None and issuer_id == self.scope_id


@dataclass(frozen=True)
class ScopeFilter:
    """What a principal may see of a scopable resource: everything, or rows of these profiles/issuers."""

    everything: bool
    profile_ids: frozenset[str] = frozenset()
    issuer_ids: frozenset[str] = frozenset()

    @property
    def nothing(self) -> bool:
        return not self.everything and not self.profile_ids and not self.issuer_ids


@dataclass(frozen=True)
class Access:
    """The live grants of one principal, and the questions routes and services ask of them."""

    grants: tuple[Grant, ...] = field(default_factory=tuple)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(sorted({g.role for g in self.grants}))

    @property
    def permissions(self) -> frozenset[str]:
        """Permissions held in at least one scope (what a route checks before the resource is known)."""
        held: set[str] = set()
        for grant in self.grants:
            held |= (
                grant.permissions
                if grant.scope == ScopeType.GLOBAL
                else {p for p in grant.permissions if is_scopable(p)}
            )
        return frozenset(held)

    @property
    def global_permissions(self) -> frozenset[str]:
        held: set[str] = set()
        for grant in self.grants:
            if grant.scope == ScopeType.GLOBAL:
                held |= grant.permissions
        return frozenset(held)

    def allows(self, permission: str, *, profile_id: str | None = None, issuer_id: str | None = None) -> bool:
        """May the principal do ``permission`` on a resource under this profile and issuer?"""
        if not is_scopable(permission):
            return permission in self.global_permissions
        return any(
            permission in g.permissions and g.covers(profile_id=profile_id, issuer_id=issuer_id)
            for g in self.grants
        )

    def scope_for(self, permission: str) -> ScopeFilter:
        profiles: set[str] = set()
        issuers: set[str] = set()
        for grant in self.grants:
            if permission not in grant.permissions:
                continue
            if grant.scope == ScopeType.GLOBAL:
                return ScopeFilter(everything=True)
            (profiles if grant.scope == ScopeType.PROFILE else issuers).add(grant.scope_id or "")
        return ScopeFilter(everything=False, profile_ids=frozenset(profiles), issuer_ids=frozenset(issuers))

    def can_grant(self, permissions: Iterable[str], *, scope: ScopeType, scope_id: str | None) -> list[str]:
        """Permissions the principal could not hand out in that scope (the escalation guard)."""
        profile_id = scope_id if scope == ScopeType.PROFILE else None
        issuer_id = scope_id if scope == ScopeType.ISSUER else None
        missing = []
        for permission in sorted(set(permissions)):
            if scope == ScopeType.GLOBAL or not is_scopable(permission):
                ok = permission in self.global_permissions
            else:
                ok = self.allows(permission, profile_id=profile_id, issuer_id=issuer_id)
            if not ok:
                missing.append(permission)
        return missing


def permissions_for_roles(
    roles: Iterable[str], custom: Mapping[str, frozenset[str]] | None = None
) -> frozenset[str]:
    """Union of the permissions of the given roles; unknown roles grant nothing."""
    catalogue = dict(BUILTIN_ROLES) | dict(custom or {})
    granted: set[str] = set()
    for role in roles:
        granted |= catalogue.get(role, frozenset())
    return frozenset(granted)


def global_access(roles: Iterable[str], custom: Mapping[str, frozenset[str]] | None = None) -> Access:
    catalogue = dict(BUILTIN_ROLES) | dict(custom or {})
    return Access(tuple(Grant(role=r, permissions=catalogue.get(r, frozenset())) for r in sorted(set(roles))))


def unknown_roles(roles: Iterable[str], custom: Iterable[str] = ()) -> list[str]:
    return sorted(set(roles) - set(BUILTIN_ROLES) - set(custom))


def unknown_permissions(permissions: Iterable[str]) -> list[str]:
    return sorted(set(permissions) - set(PERMISSIONS))
