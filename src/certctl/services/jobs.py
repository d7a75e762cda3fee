"""The durable job queue as use cases: claim under a lease, heartbeat, finish or back off, recover jobs
whose worker died, cancel, list. Each call is one short transaction; handlers run between them.

When a renewal job ends for good (attempts used up, or cancelled) the certificate is told in the same
transaction: Failed, or back to the status its validity gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.ids import new_id
from certctl.domain.jobs import JobStatus, JobType
from certctl.domain.lifecycle import status_for_validity
from certctl.domain.renewal import DEFAULT_BACKOFF, Backoff
from certctl.errors import Conflict, NotFound
from certctl.services.audit import SYSTEM, Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, certificates, jobs, renewals
from certctl.store.repositories.jobs import JobQuery

DEFAULT_LEASE = timedelta(seconds=30)
ERROR_LIMIT = 2000


def new_job(
    *,
    type: JobType,
    dedup_key: str,
    now: datetime,
    max_attempts: int,
    certificate_id: str | None = None,
    version_id: str | None = None,
    payload: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A pending job row, runnable at once."""
    return {
        "id": new_id("job"),
        "type": str(type),
        "status": str(JobStatus.PENDING),
        "certificate_id": certificate_id,
        "version_id": version_id,
        "dedup_key": dedup_key,
        "payload": payload or {},
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_after": now,
        "locked_by": None,
        "locked_until": None,
        "last_error": None,
        "result": None,
        "created_at": now,
        "updated_at": now,
    }


class JobService:
    def __init__(
        self, context: ServiceContext, *, backoff: Backoff = DEFAULT_BACKOFF, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        self._ctx = context
        self.backoff = backoff
        self.lease = lease

    async def claim(self, *, worker: str, types: Sequence[str], limit: int) -> list[dict[str, Any]]:
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            return await jobs.claim(
                uow.connection,
                worker=worker,
                now=now,
                locked_until=now + self.lease,
                limit=limit,
                types=types,
            )

    async def heartbeat(self, *, worker: str, job_ids: Sequence[str]) -> int:
        """Keep the lease of jobs still running here; call it well within one lease period."""
        until = self._ctx.clock.now() + self.lease
        async with unit_of_work(self._ctx.engine) as uow:
            return await jobs.heartbeat(uow.connection, job_ids=job_ids, worker=worker, locked_until=until)

    async def succeed(self, *, job: dict[str, Any], worker: str, result: dict[str, Any]) -> bool:
        """False when this worker no longer held the job (cancelled or recovered meanwhile)."""
        async with unit_of_work(self._ctx.engine) as uow:
            return await jobs.succeed(
                uow.connection, job_id=job["id"], worker=worker, result=result, now=self._ctx.clock.now()
            )

    async def fail(self, *, job: dict[str, Any], worker: str, error: str) -> JobStatus | None:
        """Back off (pending again later) or fail for good once attempts are used up. Returns the new
        status, or None when this worker no longer held the job."""
        now = self._ctx.clock.now()
        attempts = int(job["attempts"])
        retry_at = None
        if attempts < int(job["max_attempts"]):
            retry_at = self.backoff.next_attempt_at(attempt=attempts, now=now)
        async with unit_of_work(self._ctx.engine) as uow:
            moved = await jobs.fail(
                uow.connection,
                job_id=job["id"],
                worker=worker,
                error=error[:ERROR_LIMIT],
                now=now,
                retry_at=retry_at,
            )
            if not moved:
                return None
            if retry_at is None:
                await self._gave_up(uow.connection, job | {"last_error": error}, now)
                return JobStatus.FAILED
        return JobStatus.PENDING

    async def recover_expired(self) -> int:
        """Requeue jobs whose worker stopped renewing its lease (crash, SIGKILL, lost network); those
        that used up their attempts fail. Idempotent and safe to run on every replica."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            requeued, failed = await jobs.recover_expired(uow.connection, now=now)
            for job in failed:
                await self._gave_up(uow.connection, job, now)
        return requeued + len(failed)

    async def cancel(self, *, job_id: str, actor: Actor, info: RequestInfo | None = None) -> dict[str, Any]:
        """Cancel a pending or running job; 409 when it has finished already."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            cancelled = await jobs.cancel(connection, job_id=job_id, now=now)
            if cancelled is None:
                existing = await jobs.get(connection, job_id)
                if existing is None:
                    raise NotFound(f"job {job_id!r} does not exist")
                raise Conflict(f"job {job_id!r} is {existing['status']} and cannot be cancelled")
            if cancelled["type"] == JobType.RENEWAL:
                await self._stand_down(connection, cancelled, now)
            await audit.append(
                connection,
                [
                    audit_record(
                        actor=actor,
                        action="job.cancel",
                        resource_type="job",
                        resource_id=job_id,
                        at=now,
                        request=info,
                        details={"type": cancelled["type"], "certificate_id": cancelled["certificate_id"]},
                    )
                ],
            )
        return cancelled

    async def get(self, job_id: str) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            row = await jobs.get(connection, job_id)
        if row is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return row

    async def list(self, query: JobQuery) -> tuple[list[dict[str, Any]], str | None]:
        async with read_only(self._ctx.engine) as connection:
            return await jobs.list_jobs(connection, query)

    async def _gave_up(self, connection: AsyncConnection, job: dict[str, Any], now: datetime) -> None:
        if job["type"] != JobType.RENEWAL or not job["certificate_id"] or not job["version_id"]:
            return
        marked = await renewals.mark_failed(
            connection, certificate_id=job["certificate_id"], version_id=job["version_id"], now=now
        )
        if marked:
            await audit.append(
                connection,
                [
                    audit_record(
                        actor=SYSTEM,
                        action="certificate.renewal_failed",
                        resource_type="certificate",
                        resource_id=job["certificate_id"],
                        at=now,
                        outcome="failure",
                        details={
                            "job_id": job["id"],
                            "attempts": job["attempts"],
                            "error": job["last_error"],
                        },
                    )
                ],
            )

    async def _stand_down(self, connection: AsyncConnection, job: dict[str, Any], now: datetime) -> None:
        if not job["certificate_id"] or not job["version_id"]:
            return
        current = await certificates.get(connection, job["certificate_id"])
        if current is None or current["not_after"] is None:
            return
        status = status_for_validity(
            not_after=current["not_after"],
            now=now,
            expiring_within=self._ctx.expiring_within,
            renewal_due_at=current.get("renewal_due_at"),
        )
        await renewals.stand_down(
            connection,
            certificate_id=job["certificate_id"],
            version_id=job["version_id"],
            status=str(status),
            now=now,
        )
