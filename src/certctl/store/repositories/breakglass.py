"""The break-glass account row (at most one): named queries for its credential, counters and lockout."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.models import BreakGlassAccount, table_of

ACCOUNTS = table_of(BreakGlassAccount)
NO_ACCOUNT = ""
"""An id no row has: failure paths for an unknown name still run the same statements, matching nothing."""


async def current(connection: AsyncConnection) -> dict[str, Any] | None:
    """The configured account, if any (there is at most one)."""
    row = (await connection.execute(select(ACCOUNTS).order_by(ACCOUNTS.c.created_at).limit(1))).mappings()
    found = row.first()
    return dict(found) if found else None


async def by_username(connection: AsyncConnection, username: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(ACCOUNTS).where(ACCOUNTS.c.username == username))).mappings()
    found = row.first()
    return dict(found) if found else None


async def claim(connection: AsyncConnection, account_id: str) -> dict[str, Any] | None:
    """Take the row's write lock first (an UPDATE locks the row on PostgreSQL and starts the write
    transaction on SQLite), then read it: concurrent sign-in attempts are serialised, so no failure
    is lost between the read and the write."""
    await connection.execute(
        update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(failed_attempts=ACCOUNTS.c.failed_attempts)
    )
    row = (await connection.execute(select(ACCOUNTS).where(ACCOUNTS.c.id == account_id))).mappings()
    found = row.first()
    return dict(found) if found else None


async def save(connection: AsyncConnection, account_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(**values))


async def add(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(ACCOUNTS), values)


async def remove_all(connection: AsyncConnection) -> None:
    await connection.execute(delete(ACCOUNTS))
