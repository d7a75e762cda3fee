"""``/api/v1/certificates``: the managed-certificate inventory and its lifecycle verbs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.references import resolve_ref
from certctl.api.routers.approvals import HELD, held_response
from certctl.api.schemas import CertificateCreate, CertificateUpdate, ExportRequest, RenewRequest
from certctl.api.serialize import jsonable
from certctl.errors import ValidationFailed
from certctl.services.audit import Actor
from certctl.services.deployments import AgentKeyedRequest
from certctl.services.holds import Held
from certctl.services.issuance import Issued, IssueRequest
from certctl.store.repositories import rows
from certctl.store.repositories.certificates import CertificateQuery

router = APIRouter(prefix="/api/v1/certificates", tags=["certificates"])


def _issued(issued: Issued | Held) -> Any:
    if isinstance(issued, Held):
        return held_response(issued)
    body: dict[str, Any] = jsonable(issued.certificate) | {"current_version": jsonable(issued.version)}
    if issued.private_key_pem is not None:
        body["private_key_pem"] = issued.private_key_pem
    return body


@router.get("")
async def list_certificates(
    services: ServicesDep,
    actor: Actor = Depends(Need("cert.read")),
    status: list[str] = Query(default=[]),
    issuer: str | None = None,
    profile: str | None = None,
    owner: str | None = None,
    team: str | None = None,
    environment: str | None = None,
    source: str | None = None,
    q: str | None = Query(default=None, max_length=200),
    expires_before: datetime | None = None,
    expires_within_days: int | None = Query(default=None, ge=0, le=36500),
    tag: list[str] = Query(default=[], description="key=value; repeat to require several"),
    sort: str = Query(default="name", pattern=r"^-?[a-z_]+$"),
    cursor: str | None = Query(default=None, max_length=2000),
    limit: int = Query(default=50, ge=1, le=500),
) -> dict[str, Any]:
    tags: dict[str, str] = {}
    for item in tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValidationFailed(f"tag filter {item!r} is not key=value")
        tags[key] = value
    if expires_within_days is not None:
        expires_before = services.context.clock.now() + timedelta(days=expires_within_days)
    query = CertificateQuery(
        status=tuple(status),
        issuer_id=await resolve_ref(services, rows.ISSUERS, "issuer", issuer),
        profile_id=await resolve_ref(services, rows.PROFILES, "profile", profile),
        owner_id=await resolve_ref(services, rows.OWNERS, "owner", owner),
        team_id=await resolve_ref(services, rows.TEAMS, "team", team),
        environment=environment,
        source=source,
        search=q,
        expires_before=expires_before,
        tags=tags,
        sort=sort.lstrip("-"),
        descending=sort.startswith("-"),
        cursor=cursor,
        limit=limit,
    )
    items, next_cursor = await services.inventory.list(query, actor=actor)
    return {"items": jsonable(items), "next_cursor": next_cursor}


@router.post("", status_code=201, responses=HELD)
async def create_certificate(
    body: CertificateCreate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("cert.issue")),
) -> Any:
    if body.validity_days is not None and body.validity_seconds is not None:
        raise ValidationFailed("give validity_days or validity_seconds, not both")
    if body.targets is not None:
        return await _create_agent_keyed(body, services, info, actor)
    validity = None
    if body.validity_days is not None:
        validity = timedelta(days=body.validity_days)
    elif body.validity_seconds is not None:
        validity = timedelta(seconds=body.validity_seconds)
    request = IssueRequest(
        name=body.name,
        issuer=body.issuer,
        profile=body.profile,
        csr_pem=body.csr,
        key_type=body.key_type,
        common_name=body.common_name,
        sans=tuple(body.sans),
        validity=validity,
        ekus=tuple(body.ekus) if body.ekus is not None else None,
        owner_id=await resolve_ref(services, rows.OWNERS, "owner", body.owner),
        team_id=await resolve_ref(services, rows.TEAMS, "team", body.team),
        tags=body.tags,
        environment=body.environment,
        auto_renew=body.auto_renew,
        source="api",
    )
    return _issued(await services.issuance.issue(request=request, actor=actor, info=info))


async def _create_agent_keyed(body: CertificateCreate, services: Any, info: Any, actor: Actor) -> Any:
    extras = [
        f
        for f in ("csr", "key_type", "validity_days", "validity_seconds", "ekus")
        if getattr(body, f) is not None
    ]
    if extras:
        raise ValidationFailed(
            f"a certificate deployed to targets takes no {', '.join(extras)}: its agent makes the key"
        )
    request = AgentKeyedRequest(
        name=body.name,
        issuer=body.issuer,
        profile=body.profile,
        targets=tuple(body.targets or ()),
        common_name=body.common_name,
        sans=tuple(body.sans),
        owner_id=await resolve_ref(services, rows.OWNERS, "owner", body.owner),
        team_id=await resolve_ref(services, rows.TEAMS, "team", body.team),
        tags=body.tags,
        environment=body.environment,
        auto_renew=body.auto_renew,
    )
    created = await services.deployments.create_agent_keyed(request=request, actor=actor, info=info)
    return JSONResponse(jsonable(created), status_code=202)


@router.get("/{ref}")
async def get_certificate(ref: str, services: ServicesDep, actor: Actor = Depends(Need("cert.read"))) -> Any:
    return jsonable(await services.inventory.get(ref, actor=actor))


@router.patch("/{ref}")
async def update_certificate(
    ref: str,
    body: CertificateUpdate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("cert.edit")),
) -> Any:
    values: dict[str, Any] = body.model_dump(exclude_unset=True)
    if "owner" in values:
        values["owner_id"] = await resolve_ref(services, rows.OWNERS, "owner", values.pop("owner"))
    if "team" in values:
        values["team_id"] = await resolve_ref(services, rows.TEAMS, "team", values.pop("team"))
    for required in ("name", "tags", "environment", "auto_renew"):
        if required in values and values[required] is None:
            raise ValidationFailed(f"{required} cannot be null")
    return jsonable(await services.inventory.update(ref=ref, values=values, actor=actor, request=info))


@router.post("/{ref}/archive")
async def archive_certificate(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("cert.delete"))
) -> Any:
    return jsonable(await services.inventory.archive(ref=ref, actor=actor, request=info))


@router.get("/{ref}/versions")
async def certificate_versions(
    ref: str, services: ServicesDep, actor: Actor = Depends(Need("cert.read"))
) -> Any:
    return {"items": jsonable(await services.inventory.versions(ref, actor=actor))}


@router.post("/{ref}/renew", responses=HELD)
async def renew_certificate(
    ref: str,
    services: ServicesDep,
    info: InfoDep,
    body: RenewRequest | None = None,
    actor: Actor = Depends(Need("cert.renew")),
) -> Any:
    requested = await services.deployments.renew_agent_keyed(certificate_ref=ref, actor=actor, info=info)
    if requested is not None:
        if body is not None and body.csr is not None:
            raise ValidationFailed("this certificate's keys are made by its agent: renew it without a CSR")
        return JSONResponse({"status": "key_requested", "targets": requested}, status_code=202)
    issued = await services.issuance.renew(
        certificate_ref=ref, csr_pem=body.csr if body else None, actor=actor, info=info
    )
    return _issued(issued)


@router.post("/{ref}/export")
async def export_certificate(
    ref: str,
    body: ExportRequest,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("cert.export")),
) -> Response:
    exported = await services.inventory.export(
        ref=ref,
        fmt=body.format,
        password=body.password,
        include_key=body.include_key,
        actor=actor,
        request=info,
    )
    return Response(
        exported.content,
        media_type=exported.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{exported.filename}"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/{ref}/export")
async def export_chain_pem(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("cert.read"))
) -> Response:
    """Certificate and chain as PEM (no private key): what a client needs to deploy or verify."""
    exported = await services.inventory.export(
        ref=ref, fmt="pem", password=None, include_key=False, actor=actor, request=info
    )
    return Response(exported.content, media_type=exported.media_type)
