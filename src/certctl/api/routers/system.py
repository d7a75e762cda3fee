"""Health, readiness, metrics and inventory statistics."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Response
from sqlalchemy import text

from certctl.api.deps import PUBLIC, Need, ServicesDep
from certctl.observability.metrics import (
    QUEUE_STATUSES,
    render_metrics,
    set_deployment_counts,
    set_queue_counts,
)
from certctl.services.audit import Actor
from certctl.store.db import read_only
from certctl.store.repositories import jobs

router = APIRouter(tags=["system"])
log = logging.getLogger("certctl.metrics")


@router.get("/health", dependencies=[PUBLIC])
async def health() -> dict[str, str]:
    return {"status": "healthy"}


@router.get("/ready", dependencies=[PUBLIC])
async def ready(services: ServicesDep, response: Response) -> dict[str, str]:
    try:
        async with read_only(services.context.engine) as connection:
            await connection.execute(text("SELECT 1"))
    except Exception:  # readiness reports, it does not raise
        response.status_code = 503
        return {"status": "unavailable", "database": "unreachable"}
    return {"status": "ready", "database": "ok"}


@router.get("/metrics")
async def metrics(services: ServicesDep, actor: Actor = Depends(Need("metrics.read"))) -> Response:
    """Prometheus text; the queue gauges come from one grouped count of the jobs table, taken now."""
    counts: dict[tuple[str, str], int] | None = None
    try:
        async with read_only(services.context.engine) as connection:
            counts = await jobs.count_by_type_and_status(
                connection, statuses=[str(status) for status in QUEUE_STATUSES]
            )
    except Exception:  # the other metrics are still worth serving
        log.warning("metrics: the job queue could not be counted", exc_info=True)
    set_queue_counts(counts)
    try:
        set_deployment_counts(await services.deployments.outcome_counts())
    except Exception:
        log.warning("metrics: deployments could not be counted", exc_info=True)
        set_deployment_counts(None)
    body, media_type = render_metrics()
    return Response(body, media_type=media_type)


@router.get("/api/v1/stats")
async def stats(services: ServicesDep, actor: Actor = Depends(Need("stats.read"))) -> Any:
    """Counts by status and expiries per week for 13 weeks, over the certificates the caller may read."""
    now = services.context.clock.now()
    by_status, upcoming = await services.inventory.overview(actor=actor)
    weeks = [0] * 13
    for not_after in upcoming:
        weeks[min(12, (not_after - now).days // 7)] += 1
    return {"by_status": by_status, "total": sum(by_status.values()), "expiring_by_week": weeks}
