"""Role grants and custom roles: named queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.models import ApiKey, Role, RoleGrant, table_of

GRANTS = table_of(RoleGrant)
ROLES = table_of(Role)
KEYS = table_of(ApiKey)


async def grants_of(
    connection: AsyncConnection, *, principal_type: str, principal_id: str
) -> list[dict[str, Any]]:
    statement = (
        select(GRANTS)
        .where(GRANTS.c.principal_type == principal_type, GRANTS.c.principal_id == principal_id)
        .order_by(GRANTS.c.created_at, GRANTS.c.id)
    )
    return [dict(r) for r in (await connection.execute(statement)).mappings()]


async def add_grants(connection: AsyncConnection, records: list[dict[str, Any]]) -> None:
    if records:
        await connection.execute(insert(GRANTS), records)


async def remove_grant(connection: AsyncConnection, grant_id: str) -> None:
    await connection.execute(delete(GRANTS).where(GRANTS.c.id == grant_id))


async def get_grant(connection: AsyncConnection, grant_id: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(GRANTS).where(GRANTS.c.id == grant_id))).mappings().first()
    return dict(row) if row else None


async def live_admin_keys(connection: AsyncConnection, *, now: datetime) -> set[str]:
    """Ids of live API keys holding a live, global grant of the admin role."""
    statement = (
        select(KEYS.c.id)
        .join(GRANTS, and_(GRANTS.c.principal_type == "api_key", GRANTS.c.principal_id == KEYS.c.id))
        .where(
            GRANTS.c.role == "admin",
            GRANTS.c.scope_type == "global",
            or_(GRANTS.c.expires_at.is_(None), GRANTS.c.expires_at > now),
            KEYS.c.revoked_at.is_(None),
            or_(KEYS.c.expires_at.is_(None), KEYS.c.expires_at > now),
        )
    )
    return {str(r[0]) for r in (await connection.execute(statement)).all()}


async def grant_count_for_role(connection: AsyncConnection, role: str) -> int:
    statement = select(func.count()).select_from(GRANTS).where(GRANTS.c.role == role)
    return int((await connection.execute(statement)).scalar_one())


async def grants_by_principal(
    connection: AsyncConnection, *, principal_type: str
) -> dict[str, list[dict[str, Any]]]:
    statement = select(GRANTS).where(GRANTS.c.principal_type == principal_type).order_by(GRANTS.c.created_at)
    found: dict[str, list[dict[str, Any]]] = {}
    for row in (await connection.execute(statement)).mappings():
        found.setdefault(str(row["principal_id"]), []).append(dict(row))
    return found
