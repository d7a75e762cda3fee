"""Dashboard session rows, for services that end or list them (cookies are the web layer's business)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.models import WebSessionChange, table_of
from certctl.store.repositories.rows import SESSIONS

CHANGES = table_of(WebSessionChange)
CHANGES_KEPT = timedelta(minutes=10)

_generation = [0]


def generation() -> int:
    """Bumped whenever this process ends or changes sessions, so its session cache drops what it held."""
    return _generation[0]


def changed() -> None:
    _generation[0] += 1


LISTED = (
    SESSIONS.c.handle,
    SESSIONS.c.principal_type,
    SESSIONS.c.principal_id,
    SESSIONS.c.provider_id,
    SESSIONS.c.client_ip,
    SESSIONS.c.user_agent,
    SESSIONS.c.created_at,
    SESSIONS.c.last_seen_at,
    SESSIONS.c.expires_at,
)


async def end_sessions(
    connection: AsyncConnection,
    *,
    principals: Iterable[tuple[str, str]] = (),
    provider_id: str | None = None,
    idp_sid: str | None = None,
    idp_sub: str | None = None,
) -> list[str]:
    """Delete sessions of the given (type, id) principals, or those an IdP names by ``sid``/``sub``;
    returns the handles of the sessions ended."""
    s = SESSIONS
    clauses = [and_(s.c.principal_type == kind, s.c.principal_id == ident) for kind, ident in principals]
    if provider_id is not None and (idp_sid or idp_sub):
        # Back-Channel Logout 1.0 §2.4: sid names one session; sub alone names all of the subject's.
        # With both, a session opened without a sid (the provider gave none at sign-in) is matched by sub.
        idp = [s.c.provider_id == provider_id]
        if idp_sid and idp_sub:
            idp.append(s.c.idp_sub == idp_sub)
            idp.append(or_(s.c.idp_sid == idp_sid, s.c.idp_sid.is_(None)))
        elif idp_sid:
            idp.append(s.c.idp_sid == idp_sid)
        else:
            idp.append(s.c.idp_sub == idp_sub)
        clauses.append(and_(*idp))
    if not clauses:
        return []
    condition = or_(*clauses)
    found = (await connection.execute(select(s.c.id, s.c.handle).where(condition))).all()
    if found:
        await connection.execute(delete(s).where(condition))
        await log_changes(connection, [str(session_id) for session_id, _ in found])
    return [str(handle) for _, handle in found]


async def listing(
    connection: AsyncConnection, *, now: datetime, principal: tuple[str, str] | None = None, limit: int = 500
) -> list[dict[str, Any]]:
    """Live sessions (never their ids or tokens), newest first; one principal's when given."""
    statement = select(*LISTED).where(SESSIONS.c.expires_at > now)
    if principal is not None:
        statement = statement.where(
            SESSIONS.c.principal_type == principal[0], SESSIONS.c.principal_id == principal[1]
        )
    statement = statement.order_by(SESSIONS.c.created_at.desc()).limit(limit)
    return [dict(r) for r in (await connection.execute(statement)).mappings()]


async def by_handle(connection: AsyncConnection, handle: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(*LISTED).where(SESSIONS.c.handle == handle))).mappings().first()
    return dict(row) if row else None


async def remove_handle(connection: AsyncConnection, handle: str) -> bool:
    ids = [
        str(i)
        for i in (
            await connection.execute(select(SESSIONS.c.id).where(SESSIONS.c.handle == handle))
        ).scalars()
    ]
    await log_changes(connection, ids)
    return bool((await connection.execute(delete(SESSIONS).where(SESSIONS.c.handle == handle))).rowcount)


async def count_for_provider(connection: AsyncConnection, provider_id: str, *, now: datetime) -> int:
    statement = select(func.count()).where(SESSIONS.c.provider_id == provider_id, SESSIONS.c.expires_at > now)
    return int((await connection.execute(statement)).scalar_one())


async def end_provider_sessions(connection: AsyncConnection, provider_id: str) -> int:
    """End every session opened through one OIDC provider."""
    ids = [
        str(i)
        for i in (
            await connection.execute(select(SESSIONS.c.id).where(SESSIONS.c.provider_id == provider_id))
        ).scalars()
    ]
    await log_changes(connection, ids)
    return int(
        (await connection.execute(delete(SESSIONS).where(SESSIONS.c.provider_id == provider_id))).rowcount
    )


async def log_changes(connection: AsyncConnection, session_ids: Iterable[str] | None) -> None:
    """Tell every server process (each reads this log every second) that these sessions ended or
    changed; ``None``: anyone's access may have changed (a key revoked, a role edited). This process
    forgets at once."""
    changed()
    now = datetime.now(UTC)
    rows = (
        [{"session_id": None, "changed_at": now}]
        if session_ids is None
        else [{"session_id": session_id, "changed_at": now} for session_id in session_ids]
    )
    if rows:
        await connection.execute(CHANGES.insert(), rows)


async def changes_since(
    connection: AsyncConnection, seq: int, *, limit: int = 5000
) -> list[tuple[int, str | None]]:
    statement = select(CHANGES.c.seq, CHANGES.c.session_id).where(CHANGES.c.seq > seq).order_by(CHANGES.c.seq)
    return [(int(n), i) for n, i in (await connection.execute(statement.limit(limit))).all()]


async def latest_change(connection: AsyncConnection) -> int:
    return int((await connection.execute(select(func.coalesce(func.max(CHANGES.c.seq), 0)))).scalar_one())


async def forget_old_changes(connection: AsyncConnection, *, now: datetime) -> None:
    await connection.execute(delete(CHANGES).where(CHANGES.c.changed_at < now - CHANGES_KEPT))
