"""Who may do what: custom roles and grants (scoped, time-bound), with the escalation guards.

- Granting or revoking needs ``auth.role.assign`` (checked at the route) and nobody can hand out a
  permission they do not hold themselves, in that scope (``Access.can_grant``).
- A custom role can only be given permissions its editor holds globally, since it may be granted widely.
- The last live global admin cannot lose that grant.
- A role change ends the dashboard sessions of the key it changes (they sign in again with the new roles).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.auth.principals import custom_roles
from certctl.domain.ids import new_id
from certctl.domain.rbac import (
    BUILTIN_DESCRIPTIONS,
    BUILTIN_ROLES,
    ScopeType,
    unknown_permissions,
)
from certctl.errors import Conflict, Forbidden, NotFound, ValidationFailed
from certctl.services.api_keys import grant_record
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, grants, rows, web_sessions


@dataclass(frozen=True)
class GrantSpec:
    role: str
    scope: ScopeType
    scope_ref: str | None
    expires_at: datetime | None


def _builtin_view(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "builtin": True,
        "description": BUILTIN_DESCRIPTIONS[name],
        "permissions": sorted(BUILTIN_ROLES[name]),
    }


def _custom_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "builtin": False,
        "description": row["description"],
        "permissions": sorted(row["permissions"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


class AccessControlService:
    def __init__(self, context: ServiceContext, *, on_change: Any = None) -> None:
        self._ctx = context
        self._on_change = on_change

    async def list_roles(self) -> list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            custom = await rows.list_all(connection, grants.ROLES)
        return [_builtin_view(n) for n in BUILTIN_ROLES] + [_custom_view(r) for r in custom]

    async def get_role(self, name: str) -> dict[str, Any]:
        if name in BUILTIN_ROLES:
            return _builtin_view(name)
        async with read_only(self._ctx.engine) as connection:
            row = await rows.get_by_name(connection, grants.ROLES, name)
        if row is None:
            raise NotFound(f"role {name!r} does not exist")
        return _custom_view(row)

    async def create_role(
        self,
        *,
        name: str,
        description: str,
        permissions: list[str],
        actor: Actor,
        request: RequestInfo | None,
    ) -> dict[str, Any]:
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role")
        self._check_permissions(permissions, actor)
        now = self._ctx.clock.now()
        record = {
            "id": new_id("role"),
            "name": name,
            "description": description,
            "permissions": sorted(set(permissions)),
            "created_at": now,
            "updated_at": now,
        }
        async with unit_of_work(self._ctx.engine) as uow:
            if await rows.get_by_name(uow.connection, grants.ROLES, name):
                raise Conflict(f"a role named {name!r} already exists")
            await rows.add(uow.connection, grants.ROLES, record)
            await self._audit(
                uow.connection, "auth.role.create", name, actor, request, {"permissions": permissions}
            )
        self._changed()
        return _custom_view(record)

    async def change_role(
        self,
        *,
        name: str,
        description: str | None,
        permissions: list[str] | None,
        add: list[str],
        remove: list[str],
        actor: Actor,
        request: RequestInfo | None,
    ) -> dict[str, Any]:
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role and cannot be changed; create a custom role")
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await rows.get_by_name(uow.connection, grants.ROLES, name)
            if row is None:
                raise NotFound(f"role {name!r} does not exist")
            current = set(row["permissions"]) if permissions is None else set(permissions)
            updated = (current | set(add)) - set(remove)
            self._check_permissions(sorted(updated - set(row["permissions"])), actor)
            unknown = unknown_permissions(updated)
            if unknown:
                raise ValidationFailed(f"unknown permission(s): {', '.join(unknown)}")
            values: dict[str, Any] = {"permissions": sorted(updated), "updated_at": now}
            if description is not None:
                values["description"] = description
            await rows.change(uow.connection, grants.ROLES, row["id"], values)
            details = {
                "added": sorted(updated - set(row["permissions"])),
                "removed": sorted(set(row["permissions"]) - updated),
            }
            await self._audit(uow.connection, "auth.role.edit", name, actor, request, details)
            await web_sessions.log_changes(uow.connection, None)  # every holder's access changed
        self._changed()
        return _custom_view(row | values)

    async def delete_role(self, *, name: str, actor: Actor, request: RequestInfo | None) -> None:
        if name in BUILTIN_ROLES:
            raise Conflict(f"{name!r} is a built-in role")
        async with unit_of_work(self._ctx.engine) as uow:
            row = await rows.get_by_name(uow.connection, grants.ROLES, name)
            if row is None:
                raise NotFound(f"role {name!r} does not exist")
            held = await grants.grant_count_for_role(uow.connection, name)
            if held:
                raise Conflict(f"role {name!r} is still granted {held} time(s); revoke those grants first")
            await rows.remove(uow.connection, grants.ROLES, row["id"])
            await self._audit(uow.connection, "auth.role.delete", name, actor, request, {})
            await web_sessions.log_changes(uow.connection, None)  # group mappings may have named it
        self._changed()

    async def grants_of_key(self, key_id: str) -> list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            if await rows.get(connection, rows.API_KEYS, key_id) is None:
                raise NotFound(f"API key {key_id!r} does not exist")
            return await grants.grants_of(connection, principal_type="api_key", principal_id=key_id)

    async def grant(
        self, *, key_id: str, spec: GrantSpec, actor: Actor, request: RequestInfo | None
    ) -> dict[str, Any]:
        now = self._ctx.clock.now()
        if spec.expires_at is not None and spec.expires_at <= now:
            raise ValidationFailed("expires_at is in the past")
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            key = await rows.get(connection, rows.API_KEYS, key_id)
            if key is None or key["revoked_at"] is not None:
                raise NotFound(f"API key {key_id!r} does not exist or is revoked")
            catalogue = dict(BUILTIN_ROLES) | await custom_roles(connection)
            if spec.role not in catalogue:
                raise ValidationFailed(f"unknown role {spec.role!r}")
            scope_id = await self._scope_id(connection, spec)
            missing = actor.access.can_grant(catalogue[spec.role], scope=spec.scope, scope_id=scope_id)
            if missing:
                raise Forbidden(f"you cannot grant permissions you do not hold there: {', '.join(missing)}")
            record = grant_record(
                principal_id=key_id,
                role=spec.role,
                scope=spec.scope,
                scope_id=scope_id,
                expires_at=spec.expires_at,
                granted_by=actor.name,
                now=now,
            )
            try:
                await grants.add_grants(connection, [record])
            except IntegrityError as exc:
                raise Conflict("the key already holds this role in this scope") from exc
            ended = await web_sessions.end_sessions(connection, principals=[("api_key", key_id)])
            details = {"key": key_id, "role": spec.role, "scope": str(spec.scope), "scope_id": scope_id,
                       "expires_at": str(spec.expires_at), "sessions_ended": len(ended)}  # fmt: skip
            await self._audit(connection, "auth.role.grant", record["id"], actor, request, details)
        self._changed()
        return record

    async def revoke_grant(
        self, *, key_id: str, grant_id: str, actor: Actor, request: RequestInfo | None
    ) -> None:
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            row = await grants.get_grant(connection, grant_id)
            if row is None or (row["principal_type"], row["principal_id"]) != ("api_key", key_id):
                raise NotFound(f"grant {grant_id!r} does not exist on key {key_id!r}")
            catalogue = dict(BUILTIN_ROLES) | await custom_roles(connection)
            scope = ScopeType(row["scope_type"])
            missing = actor.access.can_grant(
                catalogue.get(row["role"], frozenset()), scope=scope, scope_id=row["scope_id"] or None
            )
            if missing:
                raise Forbidden(f"you cannot revoke permissions you do not hold there: {', '.join(missing)}")
            if row["role"] == "admin" and scope == ScopeType.GLOBAL:
                admins = await grants.live_admin_keys(connection, now=now)
                if admins == {key_id}:
                    raise Conflict("this is the last admin; grant admin to another key first")
            await grants.remove_grant(connection, grant_id)
            ended = await web_sessions.end_sessions(connection, principals=[("api_key", key_id)])
            details = {
                "key": key_id,
                "role": row["role"],
                "scope": row["scope_type"],
                "scope_id": row["scope_id"],
                "sessions_ended": len(ended),
            }
            await self._audit(connection, "auth.role.revoke", grant_id, actor, request, details)
        self._changed()

    async def _scope_id(self, connection: AsyncConnection, spec: GrantSpec) -> str | None:
        if spec.scope == ScopeType.GLOBAL:
            if spec.scope_ref:
                raise ValidationFailed("a global grant takes no scope id")
            return None
        if not spec.scope_ref:
            raise ValidationFailed(f"a {spec.scope} grant needs the {spec.scope} it applies to")
        table = rows.PROFILES if spec.scope == ScopeType.PROFILE else rows.ISSUERS
        row = await rows.find(connection, table, spec.scope_ref)
        if row is None:
            raise ValidationFailed(f"{spec.scope} {spec.scope_ref!r} does not exist")
        return str(row["id"])

    def _check_permissions(self, permissions: list[str], actor: Actor) -> None:
        unknown = unknown_permissions(permissions)
        if unknown:
            raise ValidationFailed(f"unknown permission(s): {', '.join(unknown)}")
        beyond = sorted(set(permissions) - actor.access.global_permissions)
        if beyond:
            raise Forbidden(f"a role cannot get permissions you do not hold: {', '.join(beyond)}")

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    async def _audit(
        self,
        connection: AsyncConnection,
        action: str,
        resource_id: str,
        actor: Actor,
        request: RequestInfo | None,
        details: dict[str, Any],
    ) -> None:
        record = audit_record(
            actor=actor,
            action=action,
            resource_type="grant" if action in ("auth.role.grant", "auth.role.revoke") else "role",
            resource_id=resource_id,
            at=self._ctx.clock.now(),
            request=request,
            details=details,
        )
        await audit.append(connection, [record])
