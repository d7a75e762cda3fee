"""The permission catalogue and the default roles.

Each ``/api/v1`` route declares one permission from :data:`PERMISSIONS`; a key or session holds roles,
and a role is a set of permissions. This module is the single source of truth for both.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

PERMISSIONS: MappingProxyType[str, str] = MappingProxyType(
    {
        "cert.read": "List and read managed certificates and their versions",
        "cert.issue": "Create managed certificates and issue them",
        "cert.edit": "Change a managed certificate's metadata",
        "cert.renew": "Renew a certificate now",
        "cert.delete": "Archive a managed certificate",
        "cert.export": "Export certificates (PEM, PKCS#12)",
        "profile.read": "Read certificate profiles",
        "profile.edit": "Create, change and delete certificate profiles",
        "issuer.read": "Read issuers",
        "issuer.edit": "Create, change, test and delete issuers",
        "ca.hierarchy.manage": "Create, import, drain and retire CAs of the local hierarchy",
        "ca.read": "Read the local CA hierarchy",
        "owner.read": "Read owners",
        "owner.edit": "Create, change and delete owners",
        "team.read": "Read teams",
        "team.edit": "Create, change and delete teams",
        "auth.key.read": "List API keys",
        "auth.key.create": "Create API keys",
        "auth.key.rotate": "Rotate API keys",
        "auth.key.revoke": "Revoke API keys",
        "auth.me": "Read one's own identity and permissions",
        "audit.read": "Read the audit trail",
        "audit.export": "Export the audit trail",
        "stats.read": "Read inventory statistics",
        "metrics.read": "Scrape Prometheus metrics",
    }
)

_READS = frozenset(
    {
        "cert.read",
        "profile.read",
        "issuer.read",
        "ca.read",
        "owner.read",
        "team.read",
        "stats.read",
        "auth.me",
    }
)
_LIFECYCLE = frozenset(
    {
        "cert.issue",
        "cert.edit",
        "cert.renew",
        "cert.delete",
        "cert.export",
        "profile.edit",
        "issuer.edit",
        "ca.hierarchy.manage",
        "owner.edit",
        "team.edit",
        "metrics.read",
    }
)

DEFAULT_ROLES: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "admin": frozenset(PERMISSIONS),
        "operator": _READS | _LIFECYCLE,
        "viewer": _READS,
        "auditor": frozenset({"audit.read", "audit.export", "auth.me"}),
    }
)


def permissions_for_roles(roles: Iterable[str]) -> frozenset[str]:
    """Union of the permissions of the given roles; unknown roles grant nothing."""
    granted: set[str] = set()
    for role in roles:
        granted |= DEFAULT_ROLES.get(role, frozenset())
    return frozenset(granted)


def unknown_roles(roles: Iterable[str]) -> list[str]:
    return sorted(set(roles) - set(DEFAULT_ROLES))
