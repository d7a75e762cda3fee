"""``/api/v1/policies``: issuance policies (rules checked before signing) and their violations view."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.policy_schemas import PolicyCreate, PolicyUpdate
from certctl.api.serialize import jsonable
from certctl.errors import ValidationFailed
from certctl.services.audit import Actor

router = APIRouter(prefix="/api/v1/policies", tags=["policies"])


@router.get("")
async def list_policies(services: ServicesDep, actor: Actor = Depends(Need("policy.read"))) -> Any:
    return {"items": jsonable(await services.policies.list())}


@router.post("", status_code=201)
async def create_policy(
    body: PolicyCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("policy.create"))
) -> Any:
    values = body.model_dump(mode="json")
    return jsonable(await services.policies.create(values=values, actor=actor, request=info))


@router.get("/{ref}")
async def get_policy(ref: str, services: ServicesDep, actor: Actor = Depends(Need("policy.read"))) -> Any:
    return jsonable(await services.policies.get(ref))


@router.patch("/{ref}")
async def update_policy(
    ref: str,
    body: PolicyUpdate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("policy.edit")),
) -> Any:
    """Change a policy; ``rules``, when given, replaces the whole rule list."""
    values = body.model_dump(mode="json", exclude_unset=True)
    nulls = sorted(key for key, value in values.items() if value is None)
    if nulls:
        raise ValidationFailed(f"{', '.join(nulls)} cannot be null")
    return jsonable(await services.policies.update(ref=ref, values=values, actor=actor, request=info))


@router.delete("/{ref}", status_code=204)
async def delete_policy(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("policy.delete"))
) -> Response:
    await services.policies.delete(ref=ref, actor=actor, request=info)
    return Response(status_code=204)


@router.get("/{ref}/violations")
async def policy_violations(
    ref: str,
    services: ServicesDep,
    actor: Actor = Depends(Need("policy.read")),
    cursor: str | None = Query(default=None, max_length=2000),
    limit: int = Query(default=100, ge=1, le=500),
) -> Any:
    """Existing live certificates that break the policy (warn-mode rules included, marked by ``mode``)."""
    found = await services.policies.violations(ref=ref, actor=actor, cursor=cursor, limit=limit)
    return jsonable(found)
