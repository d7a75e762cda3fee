"""Four-eyes approval requests: named queries over the ``approvals`` table.

Decisions are compare-and-set updates (``WHERE status = 'pending'``) so that two approvers racing on one
request, or two replicas sweeping expiries, change it once and audit it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.approvals import ApprovalStatus
from certctl.domain.rbac import ScopeFilter
from certctl.store.models import Approval, table_of
from certctl.store.repositories.certificates import decode_cursor, encode_cursor
from certctl.store.repositories.rows import PROFILES

APPROVALS = table_of(Approval)
PENDING = str(ApprovalStatus.PENDING)


@dataclass(frozen=True)
class ApprovalQuery:
    """Newest first. ``scope`` limits the rows to what the reader may see (None: everything)."""

    status: Sequence[str] = ()
    kind: str | None = None
    profile_id: str | None = None
    scope: ScopeFilter | None = None
    cursor: str | None = None
    limit: int = 50


def _visible(scope: ScopeFilter | None) -> ColumnElement[bool] | None:
    if scope is None or scope.everything:
        return None
    return or_(
        APPROVALS.c.profile_id.in_(sorted(scope.profile_ids)),
        APPROVALS.c.issuer_id.in_(sorted(scope.issuer_ids)),
    )


async def insert_approval(connection: AsyncConnection, record: dict[str, Any]) -> None:
    await connection.execute(insert(APPROVALS), record)


async def get(connection: AsyncConnection, approval_id: str) -> dict[str, Any] | None:
    statement = select(APPROVALS).where(APPROVALS.c.id == approval_id)
    row = (await connection.execute(statement)).mappings().first()
    return dict(row) if row else None


async def list_approvals(
    connection: AsyncConnection, query: ApprovalQuery
) -> tuple[list[dict[str, Any]], str | None]:
    """One page, newest first, and the cursor of the next page (None at the end)."""
    conditions: list[ColumnElement[bool]] = []
    if query.status:
        conditions.append(APPROVALS.c.status.in_(list(query.status)))
    if query.kind is not None:
        conditions.append(APPROVALS.c.kind == query.kind)
    if query.profile_id is not None:
        conditions.append(APPROVALS.c.profile_id == query.profile_id)
    visible = _visible(query.scope)
    if visible is not None:
        conditions.append(visible)
    if query.cursor:
        created_at, row_id = decode_cursor(query.cursor, "created_at")
        conditions.append(
            or_(
                APPROVALS.c.created_at < created_at,
                and_(APPROVALS.c.created_at == created_at, APPROVALS.c.id < row_id),
            )
        )
    statement = (
        select(APPROVALS)
        .where(*conditions)
        .order_by(APPROVALS.c.created_at.desc(), APPROVALS.c.id.desc())
        .limit(query.limit + 1)
    )
    found = [dict(row) for row in (await connection.execute(statement)).mappings()]
    if len(found) <= query.limit:
        return found, None
    page = found[: query.limit]
    return page, encode_cursor(page[-1]["created_at"], page[-1]["id"])


async def pending_for_resource(
    connection: AsyncConnection, *, kind: str, resource_id: str
) -> dict[str, Any] | None:
    """The pending request of this kind on one resource (one renewal at a time per certificate)."""
    statement = select(APPROVALS).where(
        APPROVALS.c.kind == kind, APPROVALS.c.resource_id == resource_id, APPROVALS.c.status == PENDING
    )
    row = (await connection.execute(statement.limit(1))).mappings().first()
    return dict(row) if row else None


async def decide(
    connection: AsyncConnection,
    approval_id: str,
    *,
    status: str,
    decided_by: str,
    decided_by_id: str,
    note: str,
    now: datetime,
) -> dict[str, Any] | None:
    """Move a pending, unexpired request to ``status``; the updated row, or None when it was not pending
    (someone else decided first, or it expired)."""
    statement = (
        update(APPROVALS)
        .where(
            APPROVALS.c.id == approval_id,
            APPROVALS.c.status == PENDING,
            APPROVALS.c.expires_at > now,
        )
        .values(
            status=status,
            decided_by=decided_by,
            decided_by_id=decided_by_id,
            decision_note=note,
            decided_at=now,
        )
        .returning(*APPROVALS.c)
    )
    row = (await connection.execute(statement)).mappings().first()
    return dict(row) if row else None


async def record_outcome(
    connection: AsyncConnection,
    approval_id: str,
    *,
    status: str,
    result: dict[str, Any],
    resource_id: str | None = None,
) -> None:
    """After an approved request ran: what it produced (or why it failed)."""
    values: dict[str, Any] = {"status": status, "result": result}
    if resource_id is not None:
        values["resource_id"] = resource_id
    await connection.execute(update(APPROVALS).where(APPROVALS.c.id == approval_id).values(**values))


async def expire_due(connection: AsyncConnection, *, now: datetime) -> list[dict[str, Any]]:
    """Mark every pending request past its expiry as expired; the rows this call changed.

    A plain read first, so that the common case (nothing due) takes no write lock on SQLite."""
    due_ids = [
        str(row[0])
        for row in (
            await connection.execute(
                select(APPROVALS.c.id).where(APPROVALS.c.status == PENDING, APPROVALS.c.expires_at <= now)
            )
        ).all()
    ]
    if not due_ids:
        return []
    statement = (
        update(APPROVALS)
        .where(APPROVALS.c.id.in_(due_ids), APPROVALS.c.status == PENDING)
        .values(status=str(ApprovalStatus.EXPIRED), decided_at=now)
        .returning(*APPROVALS.c)
    )
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def profile_for_update(connection: AsyncConnection, profile_id: str) -> dict[str, Any] | None:
    """The stored profile, locked until the transaction ends on PostgreSQL (SQLite serialises writers
    anyway), so that a change checked against its approval flag cannot race a change of that flag."""
    statement = select(PROFILES).where(PROFILES.c.id == profile_id).with_for_update()
    row = (await connection.execute(statement)).mappings().first()
    return dict(row) if row else None
