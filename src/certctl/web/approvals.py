"""The dashboard's approvals page: the four-eyes queue, read-only.

Pending requests come first (what waits for a second person, and until when), then the recent decisions
with who decided and why. Deciding is done through the API or ``certctl approvals``, where the decision
is authenticated by the approver's own key. The page needs ``approval.read`` besides the ``cert.read``
every dashboard page needs, and shows only requests under profiles and issuers the key's grants cover.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.responses import Response

from certctl.domain.approvals import ApprovalKind, ApprovalStatus
from certctl.web.pages import relative_days

if TYPE_CHECKING:
    from certctl.web.routes import Dashboard

PERMISSION = "approval.read"
PENDING_SHOWN = 200
DECIDED_SHOWN = 100
KIND_LABELS: dict[str, str] = {
    ApprovalKind.ISSUE: "Issue certificate",
    ApprovalKind.RENEW: "Renew certificate",
    ApprovalKind.PROFILE_UPDATE: "Change profile",
    ApprovalKind.PROFILE_DELETE: "Delete profile",
}
STATUS_CLASSES: dict[str, str] = {
    ApprovalStatus.PENDING: "status-pending",
    ApprovalStatus.APPROVED: "status-active",
    ApprovalStatus.REJECTED: "status-revoked",
    ApprovalStatus.EXPIRED: "status-expired",
    ApprovalStatus.FAILED: "status-failed",
}
"""Badge colours borrowed from the certificate states: pending, done (green), refused, lapsed, failed."""


@dataclass(frozen=True)
class ApprovalRow:
    """One request as the page shows it."""

    id: str
    kind: str
    kind_label: str
    summary: str
    status: str
    status_class: str
    requested_by: str
    created_at: datetime
    expires_at: datetime
    decided_by: str
    decided_at: datetime | None
    decision_note: str
    error: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ApprovalRow:
        status = str(row["status"])
        result = row.get("result") or {}
        return cls(
            id=str(row["id"]),
            kind=str(row["kind"]),
            kind_label=KIND_LABELS.get(row["kind"], str(row["kind"])),
            summary=str(row["summary"]),
            status=status,
            status_class=STATUS_CLASSES.get(status, "status-unknown"),
            requested_by=str(row["requested_by"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            decided_by=str(row.get("decided_by") or ""),
            decided_at=row.get("decided_at"),
            decision_note=str(row.get("decision_note") or ""),
            error=str(result.get("error") or ""),
        )


class ApprovalsPage:
    """``GET /approvals``, rendered with the dashboard's templates, headers and session checks."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def show(self, request: Request) -> Response:
        dashboard = self.dashboard
        session = await dashboard.require(request)
        if isinstance(session, Response):
            return session
        if not session.can(PERMISSION):
            message = f"{session.who} lacks the permission '{PERMISSION}' needed to see the approval queue."
            return await dashboard.error(request, session, 403, "Permission denied", message)
        approvals = dashboard.services.approvals
        pending, _ = await approvals.list(
            actor=session.actor, status=[str(ApprovalStatus.PENDING)], limit=PENDING_SHOWN
        )
        decided_statuses = [str(s) for s in ApprovalStatus if s != ApprovalStatus.PENDING]
        decided, _ = await approvals.list(actor=session.actor, status=decided_statuses, limit=DECIDED_SHOWN)
        return await dashboard.render(
            request,
            "approvals.html",
            session=session,
            title="Approvals",
            section="approvals",
            pending=[ApprovalRow.of(row) for row in pending],
            decided=[ApprovalRow.of(row) for row in decided],
            relative=relative_days,
        )
