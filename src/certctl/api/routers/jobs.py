"""``/api/v1/jobs``: the durable job queue (renewals today). List and read jobs, cancel one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.serialize import jsonable
from certctl.domain.jobs import JobStatus, JobType
from certctl.errors import ValidationFailed
from certctl.services.audit import Actor
from certctl.store.repositories.jobs import JobQuery

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


def _known(value: str | None, allowed: type[JobType] | type[JobStatus], what: str) -> str | None:
    names = [str(member) for member in allowed]
    if value is not None and value not in names:
        raise ValidationFailed(f"unknown {what} {value!r}; choose from {', '.join(names)}")
    return value


@router.get("")
async def list_jobs(
    services: ServicesDep,
    _actor: Actor = Depends(Need("job.read")),
    type: str | None = Query(default=None, description="issuance, renewal, deployment, validation…"),
    status: str | None = Query(default=None, description="pending, running, succeeded, failed, cancelled"),
    certificate: str | None = Query(default=None, max_length=40, description="Certificate id."),
    cursor: str | None = Query(default=None, max_length=2000),
    limit: int = Query(default=50, ge=1, le=500),
) -> Any:
    """Newest first; ``next_cursor`` pages on."""
    query = JobQuery(
        type=_known(type, JobType, "type"),
        status=_known(status, JobStatus, "status"),
        certificate_id=certificate,
        cursor=cursor,
        limit=limit,
    )
    items, next_cursor = await services.jobs.list(query)
    return {"items": jsonable(items), "next_cursor": next_cursor}


@router.get("/{job_id}")
async def get_job(job_id: str, services: ServicesDep, _actor: Actor = Depends(Need("job.read"))) -> Any:
    return jsonable(await services.jobs.get(job_id))


@router.post("/{job_id}/cancel")
async def cancel_job(
    job_id: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("job.cancel"))
) -> Any:
    """Cancel a pending or running job (409 once it has finished). A cancelled renewal leaves the
    certificate's current version out of the automatic scan; renew it by hand when wanted."""
    return jsonable(await services.jobs.cancel(job_id=job_id, actor=actor, info=info))
