"""Health, readiness, metrics and inventory statistics."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Response
from sqlalchemy import text

from certctl.api.deps import PUBLIC, Need, ServicesDep
from certctl.observability.metrics import render_metrics
from certctl.services.audit import Actor
from certctl.store.db import read_only
from certctl.store.repositories import certificates

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
    now = services.context.clock.now()
    async with read_only(services.context.engine) as connection:
        by_status = await certificates.count_by_status(connection)
        upcoming = await certificates.expiry_histogram(connection, now=now, until=now + timedelta(days=90))
    weeks = [0] * 13
    for not_after in upcoming:
        weeks[min(12, (not_after - now).days // 7)] += 1
    return {"by_status": by_status, "total": sum(by_status.values()), "expiring_by_week": weeks}
