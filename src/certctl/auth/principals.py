"""Resolve what a principal may do: its live grants, with built-in and custom role definitions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.rbac import BUILTIN_ROLES, Access, Grant, ScopeType
from certctl.store.models import OidcGroupMapping, Role, RoleGrant, table_of

GRANTS = table_of(RoleGrant)
ROLES = table_of(Role)
MAPPINGS = table_of(OidcGroupMapping)
USER_PRINCIPAL = "user"


async def custom_roles(connection: AsyncConnection) -> dict[str, frozenset[str]]:
    rows = (await connection.execute(select(ROLES.c.name, ROLES.c.permissions))).all()
    return {str(name): frozenset(permissions) for name, permissions in rows}


async def load_access(
    connection: AsyncConnection, *, principal_type: str, principal_id: str, now: datetime
) -> Access:
    """Live (unexpired) grants of one principal. A grant of a role that no longer exists grants nothing."""
    statement = select(GRANTS).where(
        GRANTS.c.principal_type == principal_type, GRANTS.c.principal_id == principal_id
    )
    rows = [dict(r) for r in (await connection.execute(statement)).mappings()]
    needs_custom = any(r["role"] not in BUILTIN_ROLES for r in rows)
    catalogue = dict(BUILTIN_ROLES) | (await custom_roles(connection) if needs_custom else {})
    grants = []
    for row in rows:
        if row["expires_at"] is not None and row["expires_at"] <= now:
            continue
        grants.append(
            Grant(
                role=row["role"],
                permissions=catalogue.get(row["role"], frozenset()),
                scope=ScopeType(row["scope_type"]),
                scope_id=row["scope_id"] or None,
                expires_at=row["expires_at"],
            )
        )
    return Access(tuple(grants))


async def load_user_access(
    connection: AsyncConnection, *, user_id: str, provider_id: str, groups: list[str], now: datetime
) -> Access:
    """An OIDC user's access: the roles its provider's group mappings give its current groups, plus any
    role granted to the user directly (e.g. the OIDC first admin)."""
    direct = await load_access(connection, principal_type=USER_PRINCIPAL, principal_id=user_id, now=now)
    if not groups:
        return direct
    statement = select(MAPPINGS).where(
        MAPPINGS.c.provider_id == provider_id, MAPPINGS.c.group_name.in_(sorted(set(groups))[:500])
    )
    mapped = [dict(r) for r in (await connection.execute(statement)).mappings()]
    if not mapped:
        return direct
    needs_custom = any(r["role"] not in BUILTIN_ROLES for r in mapped)
    catalogue = dict(BUILTIN_ROLES) | (await custom_roles(connection) if needs_custom else {})
    grants = [
        Grant(
            role=r["role"],
            permissions=catalogue.get(r["role"], frozenset()),
            scope=ScopeType(r["scope_type"]),
            scope_id=r["scope_id"] or None,
            expires_at=None,
        )
        for r in mapped
    ]
    return Access(direct.grants + tuple(grants))
