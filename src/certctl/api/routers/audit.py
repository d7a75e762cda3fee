"""``/api/v1/audit``: read and export the append-only audit trail."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from certctl.api.deps import Need, ServicesDep
from certctl.api.serialize import jsonable
from certctl.services.audit import Actor
from certctl.store.db import read_only
from certctl.store.repositories import audit
from certctl.store.repositories.audit import AuditQuery

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])
CSV_COLUMNS = (
    "event_id",
    "occurred_at",
    "actor",
    "actor_type",
    "action",
    "resource_type",
    "resource_id",
    "outcome",
    "details",
    "body_sha256",
    "latency_ms",
    "request_id",
    "event_hash",
    "seq",
    "chain_hash",
)


@router.get("")
async def list_audit(
    services: ServicesDep,
    actor: Actor = Depends(Need("audit.read")),
    action: str | None = None,
    who: str | None = Query(default=None, alias="actor"),
    resource_type: str | None = None,
    resource_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = Query(default=None, ge=1, description="cursor: the id of the last event seen"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> Any:
    query = AuditQuery(
        action=action,
        actor=who,
        resource_type=resource_type,
        resource_id=resource_id,
        since=since,
        until=until,
        after_id=before,
        limit=limit,
    )
    async with read_only(services.context.engine) as connection:
        items = await audit.list_events(connection, query)
    next_cursor = items[-1]["id"] if len(items) == limit else None
    return {"items": jsonable(items), "next_cursor": next_cursor}


@router.get("/export")
async def export_audit(
    services: ServicesDep,
    actor: Actor = Depends(Need("audit.export")),
    format: str = Query(default="json", pattern="^(json|csv)$"),
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
) -> StreamingResponse:
    """Streamed: JSON Lines or CSV, oldest first, with the hashes so an export can be verified offline."""
    query = AuditQuery(since=since, until=until, action=action)

    async def lines() -> AsyncIterator[str]:
        async with read_only(services.context.engine) as connection:
            if format == "csv":
                buffer = io.StringIO()
                writer = csv.writer(buffer)
                writer.writerow(CSV_COLUMNS)
                async for row in audit.stream_events(connection, query):
                    data = jsonable(row)
                    data["details"] = json.dumps(data["details"], sort_keys=True)
                    writer.writerow([data.get(c, "") for c in CSV_COLUMNS])
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
                yield buffer.getvalue()
            else:
                async for row in audit.stream_events(connection, query):
                    yield json.dumps(jsonable(row), sort_keys=True) + "\n"

    media = "text/csv" if format == "csv" else "application/x-ndjson"
    filename = f"certctl-audit.{'csv' if format == 'csv' else 'jsonl'}"
    return StreamingResponse(
        lines(), media_type=media, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
