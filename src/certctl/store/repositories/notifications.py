"""Named queries for notifications: channels, rules, the leader's cursors, the events it turns into
deliveries (audit actions, certificates near expiry), the digest's figures, and requeueing a delivery."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.jobs import JobStatus, JobType
from certctl.domain.lifecycle import CertificateStatus
from certctl.store.models import (
    AuditEvent,
    Job,
    ManagedCertificate,
    NotificationChannel,
    NotificationCursor,
    NotificationRule,
    table_of,
)

CHANNELS = table_of(NotificationChannel)
RULES = table_of(NotificationRule)
CURSORS = table_of(NotificationCursor)
EVENTS = table_of(AuditEvent)
CERTS = table_of(ManagedCertificate)
JOBS = table_of(Job)
LIVE = (
    CertificateStatus.ACTIVE,
    CertificateStatus.EXPIRING,
    CertificateStatus.EXPIRED,
    CertificateStatus.RENEWAL_IN_PROGRESS,
    CertificateStatus.FAILED,
)


async def enabled_rules(connection: AsyncConnection) -> list[dict[str, Any]]:
    statement = select(RULES).where(RULES.c.enabled.is_(True)).order_by(RULES.c.name)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def enabled_channel_ids(connection: AsyncConnection, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    statement = select(CHANNELS.c.id).where(CHANNELS.c.id.in_(list(ids)), CHANNELS.c.enabled.is_(True))
    return {str(row) for row in (await connection.execute(statement)).scalars()}


async def rules_naming_channel(connection: AsyncConnection, channel_id: str) -> list[str]:
    rules = await connection.execute(select(RULES.c.name, RULES.c.channel_ids))
    return [str(name) for name, channel_ids in rules.all() if channel_id in (channel_ids or [])]


async def cursor(connection: AsyncConnection, name: str) -> datetime | None:
    statement = select(CURSORS.c.position).where(CURSORS.c.name == name)
    found: datetime | None = (await connection.execute(statement)).scalar_one_or_none()
    return found


async def move_cursor(connection: AsyncConnection, name: str, position: datetime) -> None:
    values = {"name": name, "position": position}
    if connection.dialect.name == "postgresql":
        pg = postgresql_insert(CURSORS).values(values)
        await connection.execute(
            pg.on_conflict_do_update(index_elements=["name"], set_={"position": position})
        )
    else:
        lite = sqlite_insert(CURSORS).values(values)
        await connection.execute(
            lite.on_conflict_do_update(index_elements=["name"], set_={"position": position})
        )


async def audit_events_between(
    connection: AsyncConnection,
    *,
    actions: Sequence[str],
    since: datetime,
    until: datetime,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Audit rows of these actions with ``since <= occurred_at < until``, oldest first, keyset-paged
    after ``(occurred_at, id)``."""
    conditions = [
        EVENTS.c.action.in_(list(actions)),
        EVENTS.c.occurred_at >= since,
        EVENTS.c.occurred_at < until,
    ]
    if after is not None:
        at, row_id = after
        conditions.append(
            or_(EVENTS.c.occurred_at > at, and_(EVENTS.c.occurred_at == at, EVENTS.c.id > row_id))
        )
    statement = select(EVENTS).where(*conditions).order_by(EVENTS.c.occurred_at, EVENTS.c.id).limit(limit)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def certificates_by_ids(connection: AsyncConnection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    statement = select(CERTS).where(CERTS.c.id.in_(sorted(set(ids))))
    return {str(row["id"]): dict(row) for row in (await connection.execute(statement)).mappings()}


async def expiring(
    connection: AsyncConnection, *, not_before: datetime, horizon: datetime, limit: int
) -> list[dict[str, Any]]:
    """Live certificates whose notAfter lies in ``[not_before, horizon]``, soonest first."""
    statement = (
        select(CERTS)
        .where(
            CERTS.c.status.in_([str(s) for s in LIVE]),
            CERTS.c.not_after >= not_before,
            CERTS.c.not_after <= horizon,
            CERTS.c.current_version_id.is_not(None),
        )
        .order_by(CERTS.c.not_after, CERTS.c.id)
        .limit(limit)
    )
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def certificates_in_status(
    connection: AsyncConnection, status: str, limit: int
) -> list[dict[str, Any]]:
    statement = select(CERTS).where(CERTS.c.status == status).order_by(CERTS.c.name).limit(limit)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def audit_counts(connection: AsyncConnection, *, since: datetime, until: datetime) -> dict[str, int]:
    statement = (
        select(EVENTS.c.action, func.count())
        .where(EVENTS.c.occurred_at >= since, EVENTS.c.occurred_at < until)
        .group_by(EVENTS.c.action)
    )
    return {str(action): int(n) for action, n in (await connection.execute(statement)).all()}


async def requeue(connection: AsyncConnection, *, job_id: str, now: datetime) -> dict[str, Any] | None:
    """A failed (dead-lettered) delivery goes back to pending with fresh attempts."""
    statement = (
        update(JOBS)
        .where(
            JOBS.c.id == job_id,
            JOBS.c.type == JobType.NOTIFICATION,
            JOBS.c.status.in_([JobStatus.FAILED, JobStatus.CANCELLED]),
        )
        .values(status=JobStatus.PENDING, attempts=0, run_after=now, updated_at=now)
        .returning(*JOBS.c)
    )
    row = (await connection.execute(statement)).mappings().first()
    return dict(row) if row else None
