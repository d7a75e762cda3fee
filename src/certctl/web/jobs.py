"""The dashboard's job queue: a filtered, paged list, one job's detail, and a Cancel button.

The pages show what ``GET /api/v1/jobs`` shows and need the same ``job.read`` (besides the ``cert.read``
every dashboard page needs). Cancel posts a form with the session's CSRF token and needs ``job.cancel``,
like ``POST /api/v1/jobs/{id}/cancel``, and goes through the same service call: a cancelled renewal puts
its certificate back to the status its validity gives, and the cancellation is audited as ``job.cancel``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import Request
from starlette.responses import Response

from certctl.domain.jobs import FINISHED, JobStatus, JobType
from certctl.errors import Conflict, NotFound, ValidationFailed
from certctl.store.repositories.jobs import JobQuery
from certctl.web.pages import MAX_CURSOR, PAGE_SIZE, relative_days

if TYPE_CHECKING:
    from certctl.web.routes import Dashboard

READ = "job.read"
CANCEL = "job.cancel"
TYPES = tuple(str(t) for t in JobType)
STATUSES = tuple(str(s) for s in JobStatus)
STATUS_CLASSES: dict[str, str] = {
    JobStatus.PENDING: "status-pending",
    JobStatus.RUNNING: "status-renewalinprogress",
    JobStatus.SUCCEEDED: "status-active",
    JobStatus.FAILED: "status-failed",
    JobStatus.CANCELLED: "status-archived",
}
"""Badge colours borrowed from the certificate states: waiting, in hand, done, given up, withdrawn."""
ERROR_SHOWN = 200


@dataclass(frozen=True)
class JobFilters:
    """The list's filters and page, read leniently from the query string: an unknown value is dropped."""

    type: str = ""
    status: str = ""
    cursor: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> JobFilters:
        kind, status = params.get("type", ""), params.get("status", "")
        return cls(
            type=kind if kind in TYPES else "",
            status=status if status in STATUSES else "",
            cursor=params.get("cursor", "")[:MAX_CURSOR],
        )

    def query(self, limit: int = PAGE_SIZE) -> JobQuery:
        return JobQuery(
            type=self.type or None, status=self.status or None, cursor=self.cursor or None, limit=limit
        )

    @property
    def active(self) -> bool:
        return bool(self.type or self.status)

    def url(self, **changes: Any) -> str:
        target = replace(self, **changes)
        pairs = {"type": target.type, "status": target.status, "cursor": target.cursor}
        query = urlencode({k: v for k, v in pairs.items() if v})
        return "/jobs" + (f"?{query}" if query else "")


@dataclass(frozen=True)
class JobRow:
    """One job as the pages show it."""

    id: str
    type: str
    status: str
    status_class: str
    certificate_id: str
    version_id: str
    attempts: int
    max_attempts: int
    run_after: datetime
    locked_by: str
    locked_until: datetime | None
    created_at: datetime
    updated_at: datetime
    last_error: str
    subject: str
    result: dict[str, Any]
    cancellable: bool

    @property
    def short_error(self) -> str:
        first = self.last_error.splitlines()[0] if self.last_error else ""
        return first if len(first) <= ERROR_SHOWN else first[: ERROR_SHOWN - 1] + "…"

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> JobRow:
        status = str(row["status"])
        return cls(
            id=str(row["id"]),
            type=str(row["type"]),
            status=status,
            status_class=STATUS_CLASSES.get(status, "status-unknown"),
            certificate_id=str(row.get("certificate_id") or ""),
            version_id=str(row.get("version_id") or ""),
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            run_after=row["run_after"],
            locked_by=str(row.get("locked_by") or ""),
            locked_until=row.get("locked_until"),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_error=str(row.get("last_error") or ""),
            subject=subject_of(row),
            result=dict(row.get("result") or {}),
            cancellable=status not in FINISHED,
        )


def subject_of(row: Mapping[str, Any]) -> str:
    """What the job is about, in a few words: a delivery's event title, a renewal's outcome."""
    payload = row.get("payload") or {}
    if row["type"] == JobType.NOTIFICATION:
        return str((payload.get("event") or {}).get("title") or "")
    outcome = (row.get("result") or {}).get("outcome")
    return f"outcome: {outcome}" if outcome else ""


class JobsPage:
    """``GET /jobs``, ``GET /jobs/{id}`` and ``POST /jobs/{id}/cancel`` in the dashboard's frame."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def list(self, request: Request) -> Response:
        dashboard = self.dashboard
        session = await dashboard.require_permission(request, READ, purpose="to see the job queue")
        if isinstance(session, Response):
            return session
        filters = JobFilters.from_params(request.query_params)
        notice = None
        try:
            found, next_cursor = await dashboard.services.jobs.list(filters.query())
        except ValidationFailed:
            notice = "That page link is no longer valid; showing the first page."
            filters = replace(filters, cursor="")
            found, next_cursor = await dashboard.services.jobs.list(filters.query())
        return await dashboard.render(
            request,
            "jobs.html",
            session=session,
            title="Jobs",
            section="jobs",
            filters=filters,
            items=[JobRow.of(row) for row in found],
            next_cursor=next_cursor,
            notice=notice,
            oob=False,
            types=TYPES,
            job_statuses=STATUSES,
            relative=relative_days,
        )

    async def detail(self, request: Request, job_id: str) -> Response:
        dashboard = self.dashboard
        session = await dashboard.require_permission(request, READ, purpose="to see the job queue")
        if isinstance(session, Response):
            return session
        try:
            job = JobRow.of(await dashboard.services.jobs.get(job_id))
        except NotFound:
            return await dashboard.error(request, session, 404, "Not found", f"There is no job {job_id!r}.")
        return await dashboard.render(
            request,
            "job.html",
            session=session,
            title=f"Job {job.id}",
            section="jobs",
            job=job,
            can_cancel=session.can(CANCEL),
            relative=relative_days,
        )

    async def cancel(self, request: Request, job_id: str) -> Response:
        dashboard = self.dashboard
        back = f"/jobs/{job_id}"
        session = await dashboard.require_action(request, CANCEL, purpose="to cancel jobs", back=back)
        if isinstance(session, Response):
            return session
        try:
            await dashboard.services.jobs.cancel(
                job_id=job_id, actor=session.actor, info=dashboard.audit_info(request)
            )
        except NotFound:
            return await dashboard.error(request, session, 404, "Not found", f"There is no job {job_id!r}.")
        except Conflict as exc:
            return await dashboard.error(request, session, 409, "Cannot cancel", exc.message)
        return dashboard.see_other(back)
