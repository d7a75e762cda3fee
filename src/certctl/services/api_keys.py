"""API key lifecycle (create, list, rotate, revoke) and the day-0 bootstrap of the first admin."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.auth.api_keys import KeyAuthenticator, digest, display_prefix, new_secret
from certctl.auth.principals import custom_roles
from certctl.domain.ids import new_id
from certctl.domain.rbac import ScopeType, global_access, permissions_for_roles, unknown_roles
from certctl.errors import Conflict, Forbidden, Gone, NotFound, ValidationFailed
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, grants, rows, web_sessions


@dataclass(frozen=True)
class NewKey:
    """A key as created: ``secret`` is shown this once and never stored."""

    key: dict[str, Any]
    secret: str


def public_key_view(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "secret_sha256"}


def with_grants(row: dict[str, Any], held: list[dict[str, Any]]) -> dict[str, Any]:
    public = [{k: v for k, v in g.items() if k not in ("principal_type", "principal_id")} for g in held]
    return public_key_view(row) | {"roles": sorted({g["role"] for g in held}), "grants": public}


async def active_admin_count(connection: AsyncConnection, now: datetime) -> int:
    return len(await grants.live_admin_keys(connection, now=now))


def grant_record(
    *,
    principal_id: str,
    role: str,
    scope: ScopeType,
    scope_id: str | None,
    expires_at: datetime | None,
    granted_by: str,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": new_id("grant"),
        "principal_type": "api_key",
        "principal_id": principal_id,
        "role": role,
        "scope_type": str(scope),
        "scope_id": scope_id or "",
        "expires_at": expires_at,
        "granted_by": granted_by,
        "created_at": now,
    }


class ApiKeyService:
    def __init__(self, context: ServiceContext, authenticator: KeyAuthenticator | None = None) -> None:
        self._ctx = context
        self._authenticator = authenticator

    async def create(
        self,
        *,
        name: str,
        roles: list[str],
        expires_in: timedelta | None,
        actor: Actor,
        request: RequestInfo | None = None,
        connection: AsyncConnection | None = None,
    ) -> NewKey:
        if not roles:
            raise ValidationFailed("a key needs at least one role")
        now = self._ctx.clock.now()
        secret = new_secret()
        record = {
            "id": new_id("api_key"),
            "name": name,
            "prefix": display_prefix(secret),
            "secret_sha256": digest(secret),
            "created_by": actor.name,
            "created_at": now,
            "expires_at": now + expires_in if expires_in else None,
            "revoked_at": None,
            "last_used_at": None,
        }
        if connection is not None:
            await self._insert(connection, record, sorted(set(roles)), actor, request, now)
        else:
            async with unit_of_work(self._ctx.engine) as uow:
                await self._insert(uow.connection, record, sorted(set(roles)), actor, request, now)
        return NewKey(key=public_key_view(record) | {"roles": sorted(set(roles))}, secret=secret)

    async def _insert(
        self,
        connection: AsyncConnection,
        record: dict[str, Any],
        roles: list[str],
        actor: Actor,
        request: RequestInfo | None,
        now: datetime,
    ) -> None:
        """The key and one global grant per role; the creator must hold every permission it hands out."""
        custom = await custom_roles(connection)
        bad = unknown_roles(roles, custom)
        if bad:
            raise ValidationFailed(f"unknown role(s): {', '.join(bad)}")
        beyond = actor.access.can_grant(
            permissions_for_roles(roles, custom), scope=ScopeType.GLOBAL, scope_id=None
        )
        if beyond:
            raise Forbidden(f"a key cannot get permissions its creator lacks: {', '.join(beyond)}")
        await rows.add(connection, rows.API_KEYS, record)
        await grants.add_grants(
            connection,
            [
                grant_record(
                    principal_id=record["id"],
                    role=role,
                    scope=ScopeType.GLOBAL,
                    scope_id=None,
                    expires_at=None,
                    granted_by=actor.name,
                    now=now,
                )
                for role in roles
            ],
        )
        await audit.append(
            connection,
            [
                audit_record(
                    actor=actor,
                    action="api_key.create",
                    resource_type="api_key",
                    resource_id=record["id"],
                    at=now,
                    request=request,
                    details={
                        "name": record["name"],
                        "roles": roles,
                        "expires_at": str(record["expires_at"]),
                    },
                )
            ],
        )

    async def list(self) -> list[dict[str, Any]]:
        """Every key with its grants (``roles`` lists the roles it holds in any scope)."""
        async with read_only(self._ctx.engine) as connection:
            keys = await rows.list_all(connection, rows.API_KEYS, order_by="created_at")
            held = await grants.grants_by_principal(connection, principal_type="api_key")
        return [with_grants(k, held.get(k["id"], [])) for k in keys]

    async def get(self, key_id: str) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            row = await rows.get(connection, rows.API_KEYS, key_id)
            if row is None:
                raise NotFound(f"API key {key_id!r} does not exist")
            held = await grants.grants_of(connection, principal_type="api_key", principal_id=key_id)
        return with_grants(row, held)

    async def rotate(self, *, key_id: str, actor: Actor, request: RequestInfo | None = None) -> NewKey:
        """A new secret for the same key id, name, roles and expiry; the old secret stops working."""
        now = self._ctx.clock.now()
        secret = new_secret()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await self._live(uow.connection, key_id, now)
            changes = {
                "prefix": display_prefix(secret),
                "secret_sha256": digest(secret),
                "last_used_at": None,
            }
            await rows.change(uow.connection, rows.API_KEYS, row["id"], changes)
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=actor,
                        action="api_key.rotate",
                        resource_type="api_key",
                        resource_id=row["id"],
                        at=now,
                        request=request,
                        details={"name": row["name"]},
                    )
                ],
            )
        self._forget()
        return NewKey(key=public_key_view(row | changes), secret=secret)

    async def revoke(
        self, *, key_id: str, actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await self._live(uow.connection, key_id, now)
            admins = await grants.live_admin_keys(uow.connection, now=now)
            if admins == {row["id"]}:
                raise Conflict("this is the last admin key; create another admin key before revoking it")
            await rows.change(uow.connection, rows.API_KEYS, row["id"], {"revoked_at": now})
            await web_sessions.end_sessions(uow.connection, principals=[("api_key", row["id"])])
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=actor,
                        action="api_key.revoke",
                        resource_type="api_key",
                        resource_id=row["id"],
                        at=now,
                        request=request,
                        details={"name": row["name"]},
                    )
                ],
            )
        self._forget()
        return public_key_view(row | {"revoked_at": now})

    async def bootstrap(
        self,
        *,
        presented_token: str,
        configured_token: str | None,
        name: str,
        request: RequestInfo | None = None,
    ) -> NewKey:
        """Day-0: trade the one-shot bootstrap token for the first admin key; 410 once an admin exists."""
        if not configured_token:
            raise NotFound("bootstrap is not enabled on this server")
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            if uow.connection.dialect.name == "postgresql":
                await uow.connection.execute(select(func.pg_advisory_xact_lock(0x63657274)))
            if await active_admin_count(uow.connection, now) > 0:
                raise Gone("bootstrap is closed: an admin key already exists")
            if not hmac.compare_digest(presented_token.encode(), configured_token.encode()):
                raise Forbidden("the bootstrap token is not valid")
            actor = Actor(
                id="bootstrap", name="bootstrap-token", type="bootstrap", access=global_access(["admin"])
            )
            return await self.create(
                name=name,
                roles=["admin"],
                expires_in=None,
                actor=actor,
                request=request,
                connection=uow.connection,
            )

    async def _live(self, connection: AsyncConnection, key_id: str, now: datetime) -> dict[str, Any]:
        row = await rows.get(connection, rows.API_KEYS, key_id)
        if row is None:
            raise NotFound(f"API key {key_id!r} does not exist")
        if row["revoked_at"] is not None:
            raise Conflict(f"API key {row['name']!r} is revoked")
        return row

    def _forget(self) -> None:
        if self._authenticator is not None:
            self._authenticator.forget()
