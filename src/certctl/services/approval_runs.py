"""Carrying out an approved request, as the requester who made it.

The request runs with the requester's identity and its grants *as they are now* (a key revoked or
narrowed since the request was made no longer acts), and names the approver in the audit row of the
change (``approved_by``, ``approval_id``). Its outcome is stored on the approval: ``result`` says what was
made, or the error when the run failed, in which case the request ends ``failed`` with an
``approval.fail`` audit row and the error goes back to the approver (a failed renewal also releases its
certificate from ``RenewalInProgress``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from certctl.auth.principals import load_access
from certctl.domain.approvals import ApprovalKind, ApprovalStatus
from certctl.domain.rbac import global_access
from certctl.errors import CertctlError, Conflict, ValidationFailed
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.catalog import CatalogService
from certctl.services.context import ServiceContext
from certctl.services.holds import Approved, Held, release_renewal
from certctl.services.issuance import IssuanceService, Issued, IssueRequest
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import approvals, audit, rows

log = logging.getLogger("certctl.approvals")
KEY_PRINCIPALS = ("api_key", "web_session")
"""Requesters that are API keys (directly or through a dashboard session): they run with their live grants."""


def issue_request_from(payload: dict[str, Any]) -> IssueRequest:
    """Read back what :func:`certctl.services.holds.issue_payload` stored."""
    validity = payload.get("validity_seconds")
    ekus = payload.get("ekus")
    return IssueRequest(
        name=payload["name"],
        issuer=payload["issuer"],
        profile=payload["profile"],
        csr_pem=payload.get("csr_pem"),
        key_type=payload.get("key_type"),
        common_name=payload.get("common_name"),
        sans=tuple(payload.get("sans") or ()),
        validity=timedelta(seconds=int(validity)) if validity is not None else None,
        ekus=tuple(ekus) if ekus is not None else None,
        owner_id=payload.get("owner_id"),
        team_id=payload.get("team_id"),
        tags=dict(payload.get("tags") or {}),
        environment=payload.get("environment", ""),
        auto_renew=bool(payload.get("auto_renew", True)),
        source=payload.get("source", "api"),
    )


class ApprovedRequestRunner:
    def __init__(
        self, context: ServiceContext, *, issuance: IssuanceService, profiles: CatalogService
    ) -> None:
        self._ctx = context
        self._issuance = issuance
        self._profiles = profiles

    async def run(self, row: dict[str, Any], approver: Actor, info: RequestInfo | None) -> dict[str, Any]:
        """Run the approved request as the requester and record what came of it."""
        approved = Approved(approval_id=row["id"], approved_by=approver.name)
        try:
            requester = await self._requester(row)
            result, resource_id = await self._run(row, requester, approved, info)
        except CertctlError as exc:
            await self._record_failure(row, approver, info, exc.message, problem=exc.type_uri)
            exc.extra |= {"approval_id": row["id"], "approval_status": str(ApprovalStatus.FAILED)}
            raise
        except Exception:
            log.exception("approved request %s could not be carried out", row["id"])
            await self._record_failure(
                row, approver, info, "the request could not be carried out", problem=""
            )
            raise
        async with unit_of_work(self._ctx.engine) as uow:
            await approvals.record_outcome(
                uow.connection,
                row["id"],
                status=str(ApprovalStatus.APPROVED),
                result=result,
                resource_id=resource_id,
            )
        return row | {"result": result, "resource_id": resource_id or row["resource_id"]}

    async def _requester(self, row: dict[str, Any]) -> Actor:
        """The requester with its grants as they are now; a revoked or expired key no longer acts."""
        requester_type = str(row["payload"].get("requester_type", "api_key"))
        key_id, name = row["requested_by_id"], row["requested_by"]
        if requester_type not in KEY_PRINCIPALS:
            return Actor(id=key_id, name=name, type=requester_type, access=global_access(["admin"]))
        now = self._ctx.clock.now()
        async with read_only(self._ctx.engine) as connection:
            key = await rows.get(connection, rows.API_KEYS, key_id)
            expired = key is not None and key["expires_at"] is not None and key["expires_at"] <= now
            if key is None or key["revoked_at"] is not None or expired:
                raise Conflict(f"the requester's API key ({name!r}) is revoked or expired; it cannot act now")
            access = await load_access(connection, principal_type="api_key", principal_id=key_id, now=now)
        return Actor(id=key_id, name=name, type=requester_type, access=access)

    async def _run(
        self, row: dict[str, Any], requester: Actor, approved: Approved, info: RequestInfo | None
    ) -> tuple[dict[str, Any], str | None]:
        request = row["payload"].get("request") or {}
        kind = row["kind"]
        if kind == ApprovalKind.ISSUE:
            issue_request = issue_request_from(request)
            await self._require_catalogue_refs(issue_request)
            outcome = await self._issuance.issue(
                request=issue_request, actor=requester, info=info, approved=approved
            )
            return _certificate_result(outcome), _certificate_id(outcome)
        if kind == ApprovalKind.RENEW:
            outcome = await self._issuance.renew(
                certificate_ref=request["certificate_id"],
                csr_pem=request.get("csr_pem"),
                actor=requester,
                info=info,
                approved=approved,
            )
            return _certificate_result(outcome), _certificate_id(outcome)
        extra = {"approval_id": approved.approval_id, "approved_by": approved.approved_by}
        if kind == ApprovalKind.PROFILE_UPDATE:
            values = dict(request["values"])
            await self._profiles.update(
                ref=row["profile_id"], values=values, actor=requester, request=info, details=extra
            )
            return {"profile_id": row["profile_id"], "fields": sorted(values)}, None
        if kind == ApprovalKind.PROFILE_DELETE:
            await self._profiles.delete(ref=row["profile_id"], actor=requester, request=info, details=extra)
            return {"profile_id": row["profile_id"], "deleted": True}, None
        raise ValidationFailed(f"unknown kind of approval request {kind!r}")

    async def _require_catalogue_refs(self, request: IssueRequest) -> None:
        """Owner and team were checked when the request was made; either may have been deleted since."""
        async with read_only(self._ctx.engine) as connection:
            for table, kind, ref in (
                (rows.OWNERS, "owner", request.owner_id),
                (rows.TEAMS, "team", request.team_id),
            ):
                if ref is not None and await rows.get(connection, table, ref) is None:
                    raise Conflict(f"the request's {kind} {ref!r} no longer exists")

    async def _record_failure(
        self, row: dict[str, Any], approver: Actor, info: RequestInfo | None, message: str, *, problem: str
    ) -> None:
        now = self._ctx.clock.now()
        result = {"error": message, "problem": problem}
        async with unit_of_work(self._ctx.engine) as uow:
            await approvals.record_outcome(
                uow.connection, row["id"], status=str(ApprovalStatus.FAILED), result=result
            )
            event = audit_record(
                actor=approver,
                action="approval.fail",
                resource_type="approval",
                resource_id=row["id"],
                at=now,
                request=info,
                details={"kind": row["kind"], "summary": row["summary"], "error": message},
                outcome="failure",
            )
            await audit.append(uow.connection, [event])
            await release_renewal(
                uow.connection, self._ctx, approval=row, outcome="failed", actor=approver, info=info
            )


def _issued(outcome: Issued | Held) -> Issued:
    if isinstance(outcome, Held):  # an approved run is never held again; this guards the invariant
        raise Conflict("the approved request was held again instead of being carried out")
    return outcome


def _certificate_id(outcome: Issued | Held) -> str:
    return str(_issued(outcome).certificate["id"])


def _certificate_result(outcome: Issued | Held) -> dict[str, Any]:
    issued = _issued(outcome)
    return {
        "certificate_id": issued.certificate["id"],
        "certificate_name": issued.certificate["name"],
        "version_id": issued.version["id"],
        "serial": issued.version["serial"],
        "server_keygen": issued.private_key_pem is not None,
    }
