"""``/api/v1/intermediates``: the local CA hierarchy (roots, subordinates, imported sub-CAs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.schemas import CaCreate, CaImport
from certctl.api.serialize import jsonable
from certctl.domain.lifecycle import CaStatus
from certctl.errors import ValidationFailed
from certctl.pki.builder import Subject
from certctl.pki.errors import PkiError
from certctl.pki.names import NameConstraints
from certctl.services.audit import Actor
from certctl.services.cas import NewCa

router = APIRouter(prefix="/api/v1/intermediates", tags=["certificate authorities"])


@router.get("")
async def list_cas(services: ServicesDep, actor: Actor = Depends(Need("ca.read"))) -> Any:
    return {"items": jsonable(await services.cas.list())}


@router.post("", status_code=201)
async def create_ca(
    body: CaCreate, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("ca.hierarchy.manage"))
) -> Any:
    try:
        constraints = NameConstraints.from_dict(body.name_constraints.model_dump())
    except PkiError as exc:
        raise ValidationFailed(exc.message) from exc
    spec = NewCa(
        name=body.name,
        subject=Subject(**body.subject.model_dump()),
        key_type=body.key_type,
        validity_days=body.validity_days,
        parent=body.parent,
        path_length=body.path_length,
        name_constraints=constraints,
    )
    return jsonable(await services.cas.create(spec=spec, actor=actor, request=info))


@router.post("/import", status_code=201)
async def import_ca(
    body: CaImport, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("ca.hierarchy.manage"))
) -> Any:
    created = await services.cas.import_ca(
        name=body.name,
        cert_pem_text=body.certificate,
        key_pem_text=body.private_key,
        parent=body.parent,
        actor=actor,
        request=info,
    )
    return jsonable(created)


@router.get("/{ref}")
async def get_ca(ref: str, services: ServicesDep, actor: Actor = Depends(Need("ca.read"))) -> Any:
    return jsonable(await services.cas.get(ref))


@router.get("/{ref}/certificate")
async def ca_certificate(
    ref: str, services: ServicesDep, actor: Actor = Depends(Need("ca.read"))
) -> Response:
    ca = await services.cas.get(ref)
    return Response(ca["cert_pem"], media_type="application/x-pem-file")


async def _set(ref: str, status: CaStatus, services: ServicesDep, info: InfoDep, actor: Actor) -> Any:
    return jsonable(await services.cas.set_status(ca_ref=ref, status=status, actor=actor, request=info))


@router.post("/{ref}/drain")
async def drain_ca(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("ca.hierarchy.manage"))
) -> Any:
    """Stop new issuance from this CA; what it issued stays valid."""
    return await _set(ref, CaStatus.DRAINING, services, info, actor)


@router.post("/{ref}/activate")
async def activate_ca(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("ca.hierarchy.manage"))
) -> Any:
    """Undo a drain."""
    return await _set(ref, CaStatus.ACTIVE, services, info, actor)


@router.post("/{ref}/retire")
async def retire_ca(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("ca.hierarchy.manage"))
) -> Any:
    """Retire a drained CA for good."""
    return await _set(ref, CaStatus.RETIRED, services, info, actor)
