"""Named queries of ACME external account binding keys (RFC 8555 §7.3.4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.db import read_rows
from certctl.store.models import AcmeEabKey, table_of

EAB_KEYS = table_of(AcmeEabKey)


async def insert_key(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(EAB_KEYS), values)


async def get_key(connection: AsyncConnection, kid: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(EAB_KEYS).where(EAB_KEYS.c.kid == kid))).mappings().first()
    return dict(row) if row else None


async def list_keys(connection: AsyncConnection, *, profile: str | None = None) -> list[dict[str, Any]]:
    statement = select(EAB_KEYS).order_by(EAB_KEYS.c.created_at.desc(), EAB_KEYS.c.kid)
    if profile is not None:
        statement = statement.where(EAB_KEYS.c.profile == profile)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


_KEY_OF_ACCOUNT = select(EAB_KEYS).where(EAB_KEYS.c.account_id == bindparam("account_id"))


async def key_of_account(connection: AsyncConnection, account_id: str) -> dict[str, Any] | None:
    rows = await read_rows(connection, _KEY_OF_ACCOUNT, {"account_id": account_id})
    return rows[0] if rows else None


async def bind(connection: AsyncConnection, *, kid: str, account_id: str, now: datetime) -> bool:
    """Bind an unused, unrevoked key to an account; False when another request bound it first."""
    statement = (
        update(EAB_KEYS)
        .where(EAB_KEYS.c.kid == kid, EAB_KEYS.c.account_id.is_(None), EAB_KEYS.c.revoked_at.is_(None))
        .values(account_id=account_id, bound_at=now)
    )
    result = await connection.execute(statement)
    return bool(result.rowcount)


async def revoke(connection: AsyncConnection, *, kid: str, now: datetime) -> bool:
    statement = (
        update(EAB_KEYS).where(EAB_KEYS.c.kid == kid, EAB_KEYS.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    result = await connection.execute(statement)
    return bool(result.rowcount)
