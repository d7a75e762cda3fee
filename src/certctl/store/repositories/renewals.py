"""Queries of the renewal engine over managed certificates: the due scan and the version swap.

The scan is a keyset-paged range query on the ``renewal_due_at`` index, so one tick reads only the due
rows, a page at a time, however many certificates are managed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.lifecycle import CertificateStatus
from certctl.store.repositories.certificates import CERTS

RENEWABLE = (CertificateStatus.ACTIVE, CertificateStatus.EXPIRING, CertificateStatus.EXPIRED)
"""Statuses the scan picks up; RenewalInProgress, Failed, Revoked, Archived and Pending are left alone."""


async def due_for_renewal(
    connection: AsyncConnection, *, now: datetime, after: tuple[datetime, str] | None, limit: int
) -> list[dict[str, Any]]:
    """One page of auto-renewed certificates whose renewal is due, ordered by (renewal_due_at, id)."""
    conditions = [
        CERTS.c.renewal_due_at <= now,
        CERTS.c.auto_renew.is_(True),
        CERTS.c.status.in_([str(s) for s in RENEWABLE]),
        CERTS.c.current_version_id.is_not(None),
    ]
    if after is not None:
        due_at, row_id = after
        conditions.append(
            or_(CERTS.c.renewal_due_at > due_at, and_(CERTS.c.renewal_due_at == due_at, CERTS.c.id > row_id))
        )
    statement = (
        select(CERTS.c.id, CERTS.c.current_version_id, CERTS.c.renewal_due_at, CERTS.c.not_after)
        .where(*conditions)
        .order_by(CERTS.c.renewal_due_at, CERTS.c.id)
        .limit(limit)
    )
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def mark_in_progress(connection: AsyncConnection, *, ids: Sequence[str], now: datetime) -> int:
    if not ids:
        return 0
    result = await connection.execute(
        update(CERTS)
        .where(CERTS.c.id.in_(list(ids)), CERTS.c.status.in_([str(s) for s in RENEWABLE]))
        .values(status=CertificateStatus.RENEWAL_IN_PROGRESS, updated_at=now)
    )
    return int(result.rowcount or 0)


async def swap_current_version(
    connection: AsyncConnection, *, certificate_id: str, expected_version_id: str, values: dict[str, Any]
) -> bool:
    """Compare-and-swap: update only while the current version is still ``expected_version_id``, so two
    renewals of the same version can never both land (the loser's transaction is rolled back)."""
    result = await connection.execute(
        update(CERTS)
        .where(CERTS.c.id == certificate_id, CERTS.c.current_version_id == expected_version_id)
        .values(**values)
    )
    return bool(result.rowcount)


async def mark_failed(
    connection: AsyncConnection, *, certificate_id: str, version_id: str, now: datetime
) -> bool:
    """A renewal that used up its attempts: the certificate shows Failed until someone renews it."""
    result = await connection.execute(
        update(CERTS)
        .where(
            CERTS.c.id == certificate_id,
            CERTS.c.current_version_id == version_id,
            CERTS.c.status == CertificateStatus.RENEWAL_IN_PROGRESS,
        )
        .values(status=CertificateStatus.FAILED, updated_at=now)
    )
    return bool(result.rowcount)


async def stand_down(
    connection: AsyncConnection,
    *,
    certificate_id: str,
    version_id: str,
    status: str,
    now: datetime,
) -> bool:
    """A renewal that will not happen for this version (job cancelled, auto-renew turned off): show the
    status its validity gives again, and take the version out of the scan (the next version is due on
    its own schedule; a manual renewal still works)."""
    result = await connection.execute(
        update(CERTS)
        .where(
            CERTS.c.id == certificate_id,
            CERTS.c.current_version_id == version_id,
            CERTS.c.status == CertificateStatus.RENEWAL_IN_PROGRESS,
        )
        .values(status=status, renewal_due_at=None, updated_at=now)
    )
    return bool(result.rowcount)
