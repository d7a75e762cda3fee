"""Health, readiness, metrics and inventory statistics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from sqlalchemy import text

from certctl.api.deps import PUBLIC, Need, ServicesDep
from certctl.observability.metrics import render_metrics
from certctl.services.audit import Actor
from certctl.store.db import read_only

router = APIRouter(tags=["system"])


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
async def metrics(actor: Actor = Depends(Need("metrics.read"))) -> Response:
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
