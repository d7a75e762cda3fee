"""``/api/v1/certificates/.../revoke``: revoke one certificate or many (RFC 5280 §5.3.1 reasons)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.references import resolve_ref
from certctl.api.revocation_schemas import BulkRevokeRequest, RevokeRequest
from certctl.api.serialize import jsonable
from certctl.domain.revocation import RevocationReason
from certctl.services.audit import Actor
from certctl.services.revocation import Revocation
from certctl.store.repositories import rows
from certctl.store.repositories.certificates import CertificateQuery

router = APIRouter(prefix="/api/v1/certificates", tags=["certificates"])


def _revocation(body: RevokeRequest) -> Revocation:
    return Revocation(reason=RevocationReason.from_name(body.reason), invalidity_date=body.invalidity_date)


@router.post("/revoke")
async def revoke_many(
    body: BulkRevokeRequest,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("cert.bulk_revoke")),
) -> dict[str, Any]:
    """Revoke listed certificates, or every certificate matching a filter that the caller may revoke.
    Idempotent: already revoked ones are skipped, so re-running resumes an interrupted run."""
    query = None
    if body.filter is not None:
        query = CertificateQuery(
            issuer_id=await resolve_ref(services, rows.ISSUERS, "issuer", body.filter.issuer),
            profile_id=await resolve_ref(services, rows.PROFILES, "profile", body.filter.profile),
            owner_id=await resolve_ref(services, rows.OWNERS, "owner", body.filter.owner),
            team_id=await resolve_ref(services, rows.TEAMS, "team", body.filter.team),
            source=body.filter.source,
            cursor=body.cursor,
        )
    outcome = await services.revocation.revoke_many(
        refs=body.ids or (),
        query=query,
        revocation=_revocation(body),
        actor=actor,
        request=info,
        limit=body.limit,
    )
    return {
        "revoked": outcome.revoked,
        "already_revoked": outcome.already_revoked,
        "skipped": outcome.skipped,
        "not_found": outcome.not_found,
        "next_cursor": outcome.next_cursor,
        "crls_published": sorted(outcome.ca_ids),
    }


@router.post("/{ref}/revoke")
async def revoke_certificate(
    ref: str,
    body: RevokeRequest,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("cert.revoke")),
) -> Any:
    """Revoke the current version; 409 if it is revoked already (the first reason and date stand)."""
    revoked = await services.revocation.revoke(
        ref=ref, revocation=_revocation(body), actor=actor, request=info
    )
    return jsonable(revoked)
