"""Small named queries shared by the catalogue tables (teams, owners, profiles, issuers, CAs, keys)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.models import (
    ApiKey,
    CertificateAuthority,
    Issuer,
    ManagedCertificate,
    Owner,
    Profile,
    Team,
    WebSession,
    table_of,
)

TEAMS = table_of(Team)
OWNERS = table_of(Owner)
PROFILES = table_of(Profile)
ISSUERS = table_of(Issuer)
CAS = table_of(CertificateAuthority)
API_KEYS = table_of(ApiKey)
SESSIONS = table_of(WebSession)
CERTS = table_of(ManagedCertificate)


async def get(connection: AsyncConnection, table: Table, row_id: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(table).where(table.c.id == row_id))).mappings().first()
    return dict(row) if row else None


async def get_by_name(connection: AsyncConnection, table: Table, name: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(table).where(table.c.name == name))).mappings().first()
    return dict(row) if row else None


async def find(connection: AsyncConnection, table: Table, ref: str) -> dict[str, Any] | None:
    """By id, else by unique name: callers may use either."""
    return await get(connection, table, ref) or await get_by_name(connection, table, ref)


async def list_all(
    connection: AsyncConnection, table: Table, *, order_by: str = "name"
) -> list[dict[str, Any]]:
    statement = select(table).order_by(table.c[order_by], table.c.id)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def add(connection: AsyncConnection, table: Table, values: dict[str, Any]) -> None:
    await connection.execute(insert(table), values)


async def change(connection: AsyncConnection, table: Table, row_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(table).where(table.c.id == row_id).values(**values))


async def remove(connection: AsyncConnection, table: Table, row_id: str) -> None:
    await connection.execute(delete(table).where(table.c.id == row_id))


async def certificates_referencing(connection: AsyncConnection, column: str, row_id: str) -> int:
    statement = select(func.count()).select_from(CERTS).where(CERTS.c[column] == row_id)
    return int((await connection.execute(statement)).scalar_one())
