"""``/api/v1/keys`` (API key lifecycle), ``/api/v1/auth`` (bootstrap, me, permissions)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request

from certctl.api.deps import (
    PUBLIC,
    Authenticated,
    InfoDep,
    Need,
    SecretBodyInfoDep,
    ServicesDep,
    record_auth_failure,
)
from certctl.api.schemas import BootstrapRequest, KeyCreate
from certctl.api.serialize import jsonable
from certctl.domain.rbac import PERMISSIONS, is_scopable
from certctl.errors import Forbidden
from certctl.services.api_keys import NewKey
from certctl.services.audit import Actor

router = APIRouter(prefix="/api/v1", tags=["access"])


def _new_key(new: NewKey) -> dict[str, Any]:
    return {"key": jsonable(new.key), "secret": new.secret}


@router.get("/keys")
async def list_keys(services: ServicesDep, actor: Actor = Depends(Need("auth.key.read"))) -> Any:
    return {"items": jsonable(await services.api_keys.list())}


@router.post("/keys", status_code=201)
async def create_key(
    body: KeyCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("auth.key.create"))
) -> Any:
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    if "auth.role.assign" not in actor.access.global_permissions:
        raise Forbidden("giving a key roles needs the permission 'auth.role.assign'")
    new = await services.api_keys.create(
        name=body.name, roles=body.roles, expires_in=expires, actor=actor, request=info
    )
    return _new_key(new)


@router.get("/keys/{key_id}")
async def get_key(key_id: str, services: ServicesDep, actor: Actor = Depends(Need("auth.key.read"))) -> Any:
    return jsonable(await services.api_keys.get(key_id))


@router.post("/keys/{key_id}/rotate")
async def rotate_key(
    key_id: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("auth.key.rotate_self"))
) -> Any:
    """Rotate one's own key with ``auth.key.rotate_self``; anyone else's needs ``auth.key.rotate``."""
    if key_id != actor.id and "auth.key.rotate" not in actor.access.global_permissions:
        raise Forbidden("rotating another principal's key needs the permission 'auth.key.rotate'")
    return _new_key(await services.api_keys.rotate(key_id=key_id, actor=actor, request=info))


@router.post("/keys/{key_id}/revoke")
async def revoke_key(
    key_id: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("auth.key.revoke"))
) -> Any:
    return jsonable(await services.api_keys.revoke(key_id=key_id, actor=actor, request=info))


@router.post("/auth/bootstrap", status_code=201, dependencies=[PUBLIC])
async def bootstrap(
    body: BootstrapRequest, request: Request, services: ServicesDep, info: SecretBodyInfoDep
) -> Any:
    """Day-0: trade the one-shot ``CERTCTL_BOOTSTRAP_TOKEN`` for the first admin key (410 once one exists)."""
    configured = request.app.state.bootstrap_token
    try:
        new = await services.api_keys.bootstrap(
            presented_token=body.token, configured_token=configured, name=body.name, request=info
        )
    except Forbidden:
        await record_auth_failure(request, actor_name="anonymous", reason="wrong bootstrap token")
        raise
    return _new_key(new)


@router.get("/auth/me")
async def me(actor: Actor = Depends(Authenticated())) -> Any:
    """The caller's identity, grants (role, scope, expiry) and effective permissions."""
    return {
        "id": actor.id,
        "name": actor.name,
        "type": actor.type,
        "roles": list(actor.roles),
        "grants": [
            {
                "role": g.role,
                "scope": str(g.scope),
                "scope_id": g.scope_id,
                "expires_at": jsonable(g.expires_at),
            }
            for g in actor.access.grants
        ],
        "permissions": sorted(actor.access.global_permissions),
        "scoped_permissions": sorted(actor.permissions - actor.access.global_permissions),
    }


@router.get("/auth/permissions")
async def permissions(actor: Actor = Depends(Authenticated())) -> Any:
    """The permission catalogue (the source of truth for routes, roles and docs)."""
    return {
        "permissions": [
            {"name": k, "description": v, "scopable": is_scopable(k)} for k, v in PERMISSIONS.items()
        ],
    }
