"""The durable job queue: named queries over the ``jobs`` table, correct under concurrent workers.

Claiming is one statement on both engines: ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``.
On PostgreSQL the inner select takes ``FOR UPDATE SKIP LOCKED`` so concurrent claimers never block on
or double-claim a row; SQLite serialises writers, so the single statement is already atomic there.
Every transition out of ``running`` names the worker that holds the lease, so a worker that lost its
lease (the job was recovered and claimed by someone else) cannot overwrite the new run's outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningInsert

from certctl.domain.jobs import JobStatus
from certctl.store.models import Job, table_of
from certctl.store.repositories.certificates import decode_cursor, encode_cursor

JOBS = table_of(Job)


@dataclass(frozen=True)
class JobQuery:
    type: str | None = None
    status: str | None = None
    certificate_id: str | None = None
    cursor: str | None = None
    limit: int = 50


async def enqueue(connection: AsyncConnection, records: Sequence[dict[str, Any]]) -> set[str]:
    """Insert jobs; one whose ``dedup_key`` exists already is skipped. Returns the ids inserted."""
    if not records:
        return set()
    statement: ReturningInsert[Any]
    if connection.dialect.name == "postgresql":
        statement = (
            postgresql_insert(JOBS).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(JOBS.c.id)
        )
    else:
        statement = (
            sqlite_insert(JOBS).on_conflict_do_nothing(index_elements=["dedup_key"]).returning(JOBS.c.id)
        )
    result = await connection.execute(statement, list(records))
    return {str(row.id) for row in result}


async def claim(
    connection: AsyncConnection,
    *,
    worker: str,
    now: datetime,
    locked_until: datetime,
    limit: int,
    types: Sequence[str],
) -> list[dict[str, Any]]:
    """Move up to ``limit`` due pending jobs of these types to running under this worker's lease."""
    candidates = (
        select(JOBS.c.id)
        .where(JOBS.c.status == JobStatus.PENDING, JOBS.c.run_after <= now, JOBS.c.type.in_(list(types)))
        .order_by(JOBS.c.run_after, JOBS.c.id)
        .limit(limit)
    )
    statement = (
        update(JOBS)
        .where(claimable(connection, JOBS.c.id, candidates), JOBS.c.status == JobStatus.PENDING)
        .values(
            status=JobStatus.RUNNING,
            locked_by=worker,
            locked_until=locked_until,
            attempts=JOBS.c.attempts + 1,
            updated_at=now,
        )
        .returning(*JOBS.c)
    )
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


def claimable(connection: AsyncConnection, column: Any, candidates: Select[Any]) -> ColumnElement[bool]:
    """``column`` is one of the candidate ids. On PostgreSQL the candidates are locked with ``FOR UPDATE
    SKIP LOCKED`` in a materialized CTE: as an ``IN (subquery)`` the planner may run the subquery again
    per row, so one claim could take more than its LIMIT."""
    if connection.dialect.name != "postgresql":
        return column.in_(candidates.scalar_subquery())  # type: ignore[no-any-return]
    cte = candidates.with_for_update(skip_locked=True).cte("claimable").prefix_with("MATERIALIZED")
    return column == cte.c[0]  # type: ignore[no-any-return]


def _held_by(job_id: str, worker: str) -> ColumnElement[bool]:
    return and_(JOBS.c.id == job_id, JOBS.c.status == JobStatus.RUNNING, JOBS.c.locked_by == worker)


async def heartbeat(
    connection: AsyncConnection, *, job_ids: Sequence[str], worker: str, locked_until: datetime
) -> int:
    """Extend the lease of running jobs this worker still holds; returns how many it still holds."""
    if not job_ids:
        return 0
    result = await connection.execute(
        update(JOBS)
        .where(
            JOBS.c.id.in_(list(job_ids)),
            JOBS.c.status == JobStatus.RUNNING,
            JOBS.c.locked_by == worker,
        )
        .values(locked_until=locked_until)
    )
    return int(result.rowcount or 0)


async def succeed(
    connection: AsyncConnection, *, job_id: str, worker: str, result: dict[str, Any], now: datetime
) -> bool:
    outcome = await connection.execute(
        update(JOBS)
        .where(_held_by(job_id, worker))
        .values(
            status=JobStatus.SUCCEEDED,
            result=result,
            last_error=None,
            locked_by=None,
            locked_until=None,
            updated_at=now,
        )
    )
    return bool(outcome.rowcount)


async def fail(
    connection: AsyncConnection,
    *,
    job_id: str,
    worker: str,
    error: str,
    now: datetime,
    retry_at: datetime | None,
) -> bool:
    """Back to pending until ``retry_at``, or failed for good when ``retry_at`` is None."""
    values: dict[str, Any] = {"last_error": error, "locked_by": None, "locked_until": None, "updated_at": now}
    if retry_at is None:
        values["status"] = JobStatus.FAILED
    else:
        values |= {"status": JobStatus.PENDING, "run_after": retry_at}
    outcome = await connection.execute(update(JOBS).where(_held_by(job_id, worker)).values(**values))
    return bool(outcome.rowcount)


async def recover_expired(connection: AsyncConnection, *, now: datetime) -> tuple[int, list[dict[str, Any]]]:
    """Jobs left running past their lease (the worker died): back to pending, or failed when their
    attempts are used up. Returns (requeued count, rows that failed for good)."""
    expired = and_(JOBS.c.status == JobStatus.RUNNING, JOBS.c.locked_until < now)
    lease_lost = "the worker's lease expired (it stopped or crashed)"
    exhausted = await connection.execute(
        update(JOBS)
        .where(expired, JOBS.c.attempts >= JOBS.c.max_attempts)
        .values(
            status=JobStatus.FAILED, last_error=lease_lost, locked_by=None, locked_until=None, updated_at=now
        )
        .returning(*JOBS.c)
    )
    failed = [dict(row) for row in exhausted.mappings()]
    requeued = await connection.execute(
        update(JOBS)
        .where(expired)
        .values(
            status=JobStatus.PENDING,
            last_error=lease_lost,
            run_after=now,
            locked_by=None,
            locked_until=None,
            updated_at=now,
        )
    )
    return int(requeued.rowcount or 0), failed


async def cancel(connection: AsyncConnection, *, job_id: str, now: datetime) -> dict[str, Any] | None:
    """Cancel a pending or running job (a running one's worker then finds it no longer holds it)."""
    statement = (
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.status.in_([JobStatus.PENDING, JobStatus.RUNNING]))
        .values(status=JobStatus.CANCELLED, locked_by=None, locked_until=None, updated_at=now)
        .returning(*JOBS.c)
    )
    row = (await connection.execute(statement)).mappings().first()
    return dict(row) if row else None


async def get(connection: AsyncConnection, job_id: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(JOBS).where(JOBS.c.id == job_id))).mappings().first()
    return dict(row) if row else None


async def list_jobs(connection: AsyncConnection, query: JobQuery) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, keyset-paged on (created_at, id)."""
    conditions: list[ColumnElement[bool]] = []
    for column, value in (
        (JOBS.c.type, query.type),
        (JOBS.c.status, query.status),
        (JOBS.c.certificate_id, query.certificate_id),
    ):
        if value is not None:
            conditions.append(column == value)
    if query.cursor:
        created_at, row_id = decode_cursor(query.cursor, "created_at")
        conditions.append(
            or_(JOBS.c.created_at < created_at, and_(JOBS.c.created_at == created_at, JOBS.c.id < row_id))
        )
    statement = (
        select(JOBS)
        .where(*conditions)
        .order_by(JOBS.c.created_at.desc(), JOBS.c.id.desc())
        .limit(query.limit + 1)
    )
    rows = [dict(row) for row in (await connection.execute(statement)).mappings()]
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"])
    return rows, next_cursor


async def count_by_status(connection: AsyncConnection, *, type: str) -> dict[str, int]:
    statement = select(JOBS.c.status, func.count()).where(JOBS.c.type == type).group_by(JOBS.c.status)
    return {str(status): int(n) for status, n in (await connection.execute(statement)).all()}


async def count_by_type_and_status(
    connection: AsyncConnection, *, statuses: Sequence[str]
) -> dict[tuple[str, str], int]:
    """Jobs in these statuses per (type, status), in one grouped count (the metrics scrape)."""
    statement = (
        select(JOBS.c.type, JOBS.c.status, func.count())
        .where(JOBS.c.status.in_(list(statuses)))
        .group_by(JOBS.c.type, JOBS.c.status)
    )
    return {
        (str(kind), str(status)): int(n) for kind, status, n in (await connection.execute(statement)).all()
    }
