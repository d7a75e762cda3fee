"""``/api/v1/auth/roles`` (built-in and custom roles) and ``/api/v1/keys/{id}/grants`` (who holds what)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import Field, model_validator

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.schemas import NAME_PATTERN, Strict
from certctl.api.serialize import jsonable
from certctl.domain.rbac import ScopeType
from certctl.errors import ValidationFailed
from certctl.services.access_control import GrantSpec
from certctl.services.audit import Actor

router = APIRouter(prefix="/api/v1", tags=["access"])


class RoleCreate(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    description: str = Field(default="", max_length=2000)
    permissions: list[str] = Field(max_length=200)


class RoleChange(Strict):
    description: str | None = Field(default=None, max_length=2000)
    permissions: list[str] | None = Field(default=None, max_length=200, description="replace the whole set")
    add: list[str] = Field(default_factory=list, max_length=200)
    remove: list[str] = Field(default_factory=list, max_length=200)


class GrantCreate(Strict):
    role: str = Field(min_length=1, max_length=100)
    scope: ScopeType = ScopeType.GLOBAL
    scope_id: str | None = Field(default=None, max_length=200, description="profile or issuer id or name")
    expires_at: datetime | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)

    @model_validator(mode="after")
    def _one_expiry(self) -> GrantCreate:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)")
        return self


@router.get("/auth/roles")
async def list_roles(services: ServicesDep, actor: Actor = Depends(Need("auth.role.read"))) -> Any:
    return {"items": jsonable(await services.access.list_roles())}


@router.post("/auth/roles", status_code=201)
async def create_role(
    body: RoleCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("auth.role.create"))
) -> Any:
    created = await services.access.create_role(
        name=body.name, description=body.description, permissions=body.permissions, actor=actor, request=info
    )
    return jsonable(created)


@router.get("/auth/roles/{name}")
async def get_role(name: str, services: ServicesDep, actor: Actor = Depends(Need("auth.role.read"))) -> Any:
    return jsonable(await services.access.get_role(name))


@router.patch("/auth/roles/{name}")
async def change_role(
    name: str,
    body: RoleChange,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("auth.role.edit")),
) -> Any:
    changed = await services.access.change_role(
        name=name,
        description=body.description,
        permissions=body.permissions,
        add=body.add,
        remove=body.remove,
        actor=actor,
        request=info,
    )
    return jsonable(changed)


@router.delete("/auth/roles/{name}", status_code=204)
async def delete_role(
    name: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("auth.role.delete"))
) -> Response:
    await services.access.delete_role(name=name, actor=actor, request=info)
    return Response(status_code=204)


@router.get("/keys/{key_id}/grants")
async def list_grants(
    key_id: str, services: ServicesDep, actor: Actor = Depends(Need("auth.key.read"))
) -> Any:
    return {"items": jsonable(await services.access.grants_of_key(key_id))}


@router.post("/keys/{key_id}/grants", status_code=201)
async def add_grant(
    key_id: str,
    body: GrantCreate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("auth.role.assign")),
) -> Any:
    """Grant a role to a key, globally or on one profile or issuer, optionally until a time."""
    expires_at = body.expires_at
    if body.expires_in_days is not None:
        expires_at = services.context.clock.now() + timedelta(days=body.expires_in_days)
    if body.scope != ScopeType.GLOBAL and not body.scope_id:
        raise ValidationFailed(f"a {body.scope} grant needs scope_id")
    spec = GrantSpec(role=body.role, scope=body.scope, scope_ref=body.scope_id, expires_at=expires_at)
    return jsonable(await services.access.grant(key_id=key_id, spec=spec, actor=actor, request=info))


@router.delete("/keys/{key_id}/grants/{grant_id}", status_code=204)
async def remove_grant(
    key_id: str,
    grant_id: str,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("auth.role.assign")),
) -> Response:
    await services.access.revoke_grant(key_id=key_id, grant_id=grant_id, actor=actor, request=info)
    return Response(status_code=204)
