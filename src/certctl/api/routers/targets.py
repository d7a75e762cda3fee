"""``/api/v1/targets``: where certificates get deployed, which agent serves each, and their tests."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from certctl.api.agent_schemas import TargetCreate, TargetUpdate
from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.serialize import jsonable
from certctl.services.audit import Actor
from certctl.services.targets import target_types

router = APIRouter(prefix="/api/v1", tags=["targets"])


@router.get("/target-types")
async def list_target_types(_actor: Actor = Depends(Need("target.read"))) -> Any:
    """Every target type with the JSON schema of its options (and any that failed to load)."""
    return {"items": target_types()}


@router.get("/targets")
async def list_targets(
    services: ServicesDep,
    _actor: Actor = Depends(Need("target.read")),
    agent: str | None = Query(default=None, max_length=200),
    type: str | None = Query(default=None, max_length=40),
) -> Any:
    return {"items": jsonable(await services.targets.list(agent_ref=agent, type=type))}


@router.post("/targets", status_code=201)
async def create_target(
    body: TargetCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("target.create"))
) -> Any:
    """Options are checked against the type's schema; secret options are sealed and never shown."""
    created = await services.targets.create(
        name=body.name,
        type=body.type,
        agent_ref=body.agent,
        options=body.options,
        description=body.description,
        actor=actor,
        info=info,
    )
    return jsonable(created)


@router.get("/targets/{ref}")
async def get_target(ref: str, services: ServicesDep, _actor: Actor = Depends(Need("target.read"))) -> Any:
    return jsonable(await services.targets.get(ref))


@router.patch("/targets/{ref}")
async def update_target(
    ref: str,
    body: TargetUpdate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("target.edit")),
) -> Any:
    """Options merge over the stored ones; a secret left out keeps its value."""
    updated = await services.targets.update(
        target_ref=ref, options=body.options, description=body.description, actor=actor, info=info
    )
    return jsonable(updated)


@router.delete("/targets/{ref}", status_code=204)
async def delete_target(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("target.delete"))
) -> Response:
    await services.targets.delete(target_ref=ref, actor=actor, info=info)
    return Response(status_code=204)


@router.post("/targets/{ref}/test")
async def check_target(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("target.edit"))
) -> Any:
    """Ask the serving agent to test the target (config test, paths, endpoint) at its next poll; the
    result appears in ``last_check``."""
    return jsonable(await services.targets.request_check(target_ref=ref, actor=actor, info=info))
