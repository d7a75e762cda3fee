"""``/api/v1/approvals``: the four-eyes queue. List and read held requests, approve or reject them.

Routes that can hold a request (issue, renew, change or delete an approval-tier profile) answer
``202 Accepted`` with ``{"approval": {...}}`` through :func:`held_response`; the request runs when a
different principal approves it here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import Field

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.schemas import Strict
from certctl.api.serialize import jsonable
from certctl.domain.approvals import ApprovalKind, ApprovalStatus
from certctl.errors import ValidationFailed
from certctl.services.audit import Actor
from certctl.services.holds import Held
from certctl.store.db import read_only
from certctl.store.repositories import rows

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])

HELD: dict[int | str, dict[str, Any]] = {
    202: {"description": 'Held for four-eyes approval: the body is `{"approval": {...}}`.'}
}
"""OpenAPI note for routes that may answer 202 instead of doing the work."""


class ApproveRequest(Strict):
    note: str = Field(default="", max_length=2000, description="Optional remark kept with the decision.")


class RejectRequest(Strict):
    note: str = Field(min_length=1, max_length=2000, description="Why the request is refused (required).")


def held_response(held: Held) -> JSONResponse:
    """202 Accepted with the approval request: nothing was done yet."""
    return JSONResponse({"approval": jsonable(held.approval)}, status_code=202)


def _known(values: list[str], allowed: type[ApprovalStatus] | type[ApprovalKind], what: str) -> list[str]:
    names = [str(member) for member in allowed]
    unknown = [v for v in values if v not in names]
    if unknown:
        raise ValidationFailed(
            f"unknown {what} {', '.join(map(repr, unknown))}; choose from {', '.join(names)}"
        )
    return values


@router.get("")
async def list_approvals(
    services: ServicesDep,
    actor: Actor = Depends(Need("approval.read")),
    status: list[str] = Query(default=[], description="pending, approved, rejected, expired, failed"),
    kind: str | None = Query(
        default=None, description="certificate.issue, certificate.renew, profile.update…"
    ),
    profile: str | None = Query(default=None, max_length=200, description="Profile id or name."),
    cursor: str | None = Query(default=None, max_length=2000),
    limit: int = Query(default=50, ge=1, le=500),
) -> Any:
    """Newest first; only requests under profiles and issuers the key's grants cover."""
    _known(status, ApprovalStatus, "status")
    if kind is not None:
        _known([kind], ApprovalKind, "kind")
    profile_id = None
    if profile is not None:
        async with read_only(services.context.engine) as connection:
            row = await rows.find(connection, rows.PROFILES, profile)
        if row is None:
            raise ValidationFailed(f"profile {profile!r} does not exist")
        profile_id = str(row["id"])
    items, next_cursor = await services.approvals.list(
        actor=actor, status=status, kind=kind, profile_id=profile_id, cursor=cursor, limit=limit
    )
    return {"items": jsonable(items), "next_cursor": next_cursor}


@router.get("/{approval_id}")
async def get_approval(
    approval_id: str, services: ServicesDep, actor: Actor = Depends(Need("approval.read"))
) -> Any:
    return jsonable(await services.approvals.get(approval_id, actor=actor))


@router.post("/{approval_id}/approve")
async def approve(
    approval_id: str,
    services: ServicesDep,
    info: InfoDep,
    body: ApproveRequest | None = None,
    actor: Actor = Depends(Need("approval.approve")),
) -> Any:
    """Approve and carry the request out as its requester. Refused (403) for the requester itself; when
    the run fails the request ends ``failed`` and this answers with the run's problem document."""
    note = body.note if body is not None else ""
    return jsonable(
        await services.approvals.approve(approval_id=approval_id, actor=actor, note=note, info=info)
    )


@router.post("/{approval_id}/reject")
async def reject(
    approval_id: str,
    body: RejectRequest,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("approval.reject")),
) -> Any:
    return jsonable(
        await services.approvals.reject(approval_id=approval_id, actor=actor, note=body.note, info=info)
    )
