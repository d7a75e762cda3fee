"""Scoped grants applied to single resources: what an actor may see or change under a profile/issuer.

A resource outside every grant the actor holds is answered as if it did not exist (404), so scoped keys
learn nothing about other teams' certificates; one they can see but not change gets 403.
"""

from __future__ import annotations

from typing import Any

from certctl.errors import Forbidden, NotFound
from certctl.services.audit import Actor


def require_on_certificate(actor: Actor, permission: str, row: dict[str, Any]) -> None:
    scope = {"profile_id": row["profile_id"], "issuer_id": row["issuer_id"]}
    if actor.access.allows(permission, **scope):
        return
    if permission != "cert.read" and actor.access.allows("cert.read", **scope):
        raise Forbidden(f"this key lacks the permission {permission!r} on certificate {row['name']!r}")
    raise NotFound(f"certificate {row['name']!r} does not exist")


def require_to_issue(
    actor: Actor, permission: str, *, profile: dict[str, Any], issuer: dict[str, Any]
) -> None:
    if not actor.access.allows(permission, profile_id=profile["id"], issuer_id=issuer["id"]):
        raise Forbidden(
            f"this key lacks the permission {permission!r} for profile {profile['name']!r} "
            f"and issuer {issuer['name']!r}"
        )


def require_on_catalog(actor: Actor, permission: str, *, kind: str, row: dict[str, Any]) -> None:
    """Profiles and issuers: a grant scoped to one of them covers that one only."""
    scope = {"profile_id": row["id"]} if kind == "profile" else {"issuer_id": row["id"]}
    if actor.access.allows(permission, **scope):
        return
    read = f"{kind}.read"
    if permission != read and actor.access.allows(read, **scope):
        raise Forbidden(f"this key lacks the permission {permission!r} on {kind} {row['name']!r}")
    raise NotFound(f"{kind} {row['name']!r} does not exist")
