"""Holding a request for four-eyes approval instead of carrying it out.

The issuance service and the profile routes call in here when a profile is flagged ``requires_approval``:
the request is stored as an ``approvals`` row (everything needed to run it later, in ``payload``) with its
``approval.request`` audit row, in one transaction, and the caller answers 202 with that row. When a
different actor approves, :class:`certctl.services.approvals.ApprovalService` runs the request as the
requester, passing :class:`Approved` so it is not held a second time.

Nothing secret goes into a payload: a CSR is public, and a key the server generates is made only when the
approved request runs (and then sealed like any other).

A held automatic renewal leaves its certificate ``RenewalInProgress``; when the request ends without a
renewal (rejected, expired, or its approved run failed) :func:`release_renewal` puts the certificate back
to the status its validity gives, in the transaction that ends the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.approvals import ApprovalKind, ApprovalStatus, expiry_of
from certctl.domain.ids import new_id
from certctl.domain.lifecycle import CertificateStatus, status_for_validity
from certctl.errors import Conflict
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.catalog import Hook
from certctl.services.context import ServiceContext
from certctl.store.db import unit_of_work
from certctl.store.repositories import approvals, audit, certificates, renewals

if TYPE_CHECKING:
    from certctl.services.issuance import IssueRequest

SUMMARY_LIMIT = 500


@dataclass(frozen=True)
class Held:
    """A request parked in the approval queue instead of being carried out (the API answers 202)."""

    approval: dict[str, Any]


@dataclass(frozen=True)
class Approved:
    """Marks the run of an approved request: it is carried out as the requester, naming the approver."""

    approval_id: str
    approved_by: str


def approval_details(approved: Approved | None) -> dict[str, str]:
    """What the audit row of an approved change adds: which request it was and who approved it."""
    if approved is None:
        return {}
    return {"approval_id": approved.approval_id, "approved_by": approved.approved_by}


def requires_approval(profile_row: Mapping[str, Any]) -> bool:
    rules = profile_row.get("rules") or {}
    return bool(rules.get("requires_approval"))


def _clip(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


async def hold(
    connection: AsyncConnection,
    context: ServiceContext,
    *,
    kind: ApprovalKind,
    actor: Actor,
    info: RequestInfo | None,
    summary: str,
    request: dict[str, Any],
    profile_id: str | None,
    issuer_id: str | None = None,
    resource_id: str | None = None,
) -> Held:
    """Store the pending request and its audit row in the caller's transaction."""
    now = context.clock.now()
    record: dict[str, Any] = {
        "id": new_id("approval"),
        "kind": str(kind),
        "status": str(ApprovalStatus.PENDING),
        "profile_id": profile_id,
        "issuer_id": issuer_id,
        "resource_id": resource_id,
        "summary": _clip(summary),
        "payload": {"requester_type": actor.type, "request": request},
        "requested_by": actor.name,
        "requested_by_id": actor.id,
        "request_note": "",
        "decided_by": None,
        "decided_by_id": None,
        "decision_note": "",
        "decided_at": None,
        "result": {},
        "created_at": now,
        "expires_at": expiry_of(now, context.approval_ttl),
    }
    await approvals.insert_approval(connection, record)
    event = audit_record(
        actor=actor,
        action="approval.request",
        resource_type="approval",
        resource_id=record["id"],
        at=now,
        request=info,
        details={
            "kind": record["kind"],
            "summary": record["summary"],
            "profile_id": profile_id,
            "resource_id": resource_id,
            "expires_at": record["expires_at"].isoformat(),
        },
    )
    await audit.append(connection, [event])
    return Held(approval=record)


def issue_payload(request: IssueRequest, *, profile_id: str, issuer_id: str) -> dict[str, Any]:
    """An :class:`IssueRequest` as JSON, with profile and issuer pinned to ids (a rename cannot redirect
    it); ``approvals.issue_request_from`` reads it back."""
    return {
        "name": request.name,
        "issuer": issuer_id,
        "profile": profile_id,
        "csr_pem": request.csr_pem,
        "key_type": request.key_type,
        "common_name": request.common_name,
        "sans": list(request.sans),
        "validity_seconds": int(request.validity.total_seconds()) if request.validity is not None else None,
        "ekus": list(request.ekus) if request.ekus is not None else None,
        "owner_id": request.owner_id,
        "team_id": request.team_id,
        "tags": dict(request.tags),
        "environment": request.environment,
        "auto_renew": request.auto_renew,
        "source": request.source,
    }


async def hold_issue(
    context: ServiceContext,
    *,
    request: IssueRequest,
    names: Sequence[str],
    profile_row: Mapping[str, Any],
    issuer_row: Mapping[str, Any],
    actor: Actor,
    info: RequestInfo | None,
) -> Held:
    """Hold a new certificate. A name already in the inventory is refused now rather than after approval."""
    async with unit_of_work(context.engine) as uow:
        if await certificates.name_exists(uow.connection, request.name):
            raise Conflict(f"a certificate named {request.name!r} already exists")
        summary = (
            f"issue {request.name!r} for {', '.join(names)} "
            f"under profile {profile_row['name']!r} from issuer {issuer_row['name']!r}"
        )
        return await hold(
            uow.connection,
            context,
            kind=ApprovalKind.ISSUE,
            actor=actor,
            info=info,
            summary=summary,
            request=issue_payload(request, profile_id=profile_row["id"], issuer_id=issuer_row["id"]),
            profile_id=profile_row["id"],
            issuer_id=issuer_row["id"],
        )


async def hold_renewal(
    connection: AsyncConnection,
    context: ServiceContext,
    *,
    certificate: Mapping[str, Any],
    csr_pem: str | None,
    profile_row: Mapping[str, Any],
    actor: Actor,
    info: RequestInfo | None,
) -> Held:
    """Hold a renewal, in the renewal's own transaction. One pending renewal per certificate."""
    waiting = await approvals.pending_for_resource(
        connection, kind=ApprovalKind.RENEW, resource_id=certificate["id"]
    )
    if waiting is not None:
        raise Conflict(
            f"a renewal of {certificate['name']!r} is already waiting for approval ({waiting['id']})",
            extra={"approval_id": waiting["id"]},
        )
    names = ", ".join(certificate["sans"]) or certificate["common_name"]
    return await hold(
        connection,
        context,
        kind=ApprovalKind.RENEW,
        actor=actor,
        info=info,
        summary=f"renew {certificate['name']!r} ({names}) under profile {profile_row['name']!r}",
        request={"certificate_id": certificate["id"], "csr_pem": csr_pem},
        profile_id=profile_row["id"],
        issuer_id=certificate["issuer_id"],
        resource_id=certificate["id"],
    )


async def release_renewal(
    connection: AsyncConnection,
    context: ServiceContext,
    *,
    approval: Mapping[str, Any],
    outcome: str,
    actor: Actor,
    info: RequestInfo | None = None,
) -> bool:
    """A held renewal that will not happen (``outcome``: rejected, expired, failed): a certificate still
    ``RenewalInProgress`` on the version it was held for goes back to the status its validity gives, and
    that version leaves the automatic scan (as when a renewal job is cancelled; renewing by hand still
    works, and the next version is scheduled normally). Audited as ``certificate.renewal_released``.
    True when the certificate was released; anything else (not a renewal, renewed meanwhile) is left."""
    if approval["kind"] != ApprovalKind.RENEW or not approval["resource_id"]:
        return False
    current = await certificates.get(connection, approval["resource_id"])
    if (
        current is None
        or current["status"] != CertificateStatus.RENEWAL_IN_PROGRESS
        or current["not_after"] is None
        or not current["current_version_id"]
    ):
        return False
    now = context.clock.now()
    status = status_for_validity(
        not_after=current["not_after"],
        now=now,
        expiring_within=context.expiring_within,
        renewal_due_at=current["renewal_due_at"],
    )
    released = await renewals.stand_down(
        connection,
        certificate_id=current["id"],
        version_id=current["current_version_id"],
        status=str(status),
        now=now,
    )
    if released:
        event = audit_record(
            actor=actor,
            action="certificate.renewal_released",
            resource_type="certificate",
            resource_id=current["id"],
            at=now,
            request=info,
            details={"approval_id": approval["id"], "approval": outcome, "status": str(status)},
        )
        await audit.append(connection, [event])
    return released


def changed_fields(current: Mapping[str, Any], proposed: Mapping[str, Any]) -> list[str]:
    """Fields whose proposed value differs from the stored one (``updated_at`` does not count)."""
    return sorted(k for k, v in proposed.items() if k != "updated_at" and current.get(k) != v)


def approval_tier_guard(then: Hook) -> Hook:
    """Wrap a profile ``prepare`` hook so it refuses to change a stored profile that requires approval.

    The profile routes hold such changes before they reach the catalogue service; this is the backstop in
    the service layer. It re-reads the profile under a row lock, so a change checked while the flag was
    off cannot land after someone turned it on. New profiles (nothing stored yet) pass."""

    async def guarded(connection: AsyncConnection, record: dict[str, Any]) -> dict[str, Any]:
        current = await approvals.profile_for_update(connection, record["id"])
        if current is not None and requires_approval(current) and changed_fields(current, record):
            raise Conflict(
                f"profile {current['name']!r} requires approval for changes; send the change again "
                "to have it held for approval"
            )
        return await then(connection, record)

    return guarded
