"""``/api/v1/certificates/{ref}/targets|deployments|deploy``: which targets a certificate goes to, its
deployment history, and re-deploying on demand."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from certctl.api.agent_schemas import RedeployRequest
from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.serialize import jsonable
from certctl.services.audit import Actor

router = APIRouter(prefix="/api/v1/certificates", tags=["deployments"])


@router.get("/{ref}/targets")
async def certificate_targets(
    ref: str, services: ServicesDep, actor: Actor = Depends(Need("cert.read"))
) -> Any:
    return {"items": jsonable(await services.deployments.targets_of(certificate_ref=ref, actor=actor))}


@router.put("/{ref}/targets/{target}", status_code=201)
async def map_target(
    ref: str, target: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("cert.edit"))
) -> Any:
    """Deploy to this target after every issuance and renewal. The first target moves key custody to its
    agent, which makes a fresh key: the certificate is re-issued for it."""
    row = await services.deployments.map(certificate_ref=ref, target_ref=target, actor=actor, info=info)
    return jsonable(row)


@router.delete("/{ref}/targets/{target}", status_code=204)
async def unmap_target(
    ref: str, target: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("cert.edit"))
) -> Response:
    await services.deployments.unmap(certificate_ref=ref, target_ref=target, actor=actor, info=info)
    return Response(status_code=204)


@router.get("/{ref}/deployments")
async def certificate_deployments(
    ref: str,
    services: ServicesDep,
    actor: Actor = Depends(Need("cert.read")),
    limit: int = Query(default=100, ge=1, le=500),
) -> Any:
    """Newest first: each deployment's target, version, status, message and steps."""
    rows = await services.deployments.history(certificate_ref=ref, actor=actor, limit=limit)
    return {"items": jsonable(rows)}


@router.post("/{ref}/deploy", status_code=202)
async def redeploy(
    ref: str,
    services: ServicesDep,
    info: InfoDep,
    body: RedeployRequest | None = None,
    actor: Actor = Depends(Need("cert.renew")),
) -> Any:
    """Install the current version again on every mapped target (or ``target``)."""
    rows = await services.deployments.redeploy(
        certificate_ref=ref, target_ref=body.target if body else None, actor=actor, info=info
    )
    return {"items": jsonable(rows)}
