"""API key lifecycle (create, list, rotate, revoke) and the day-0 bootstrap of the first admin."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.auth.api_keys import KeyAuthenticator, digest, display_prefix, new_secret
from certctl.domain.ids import new_id
from certctl.domain.rbac import unknown_roles
from certctl.errors import Conflict, Forbidden, Gone, NotFound, ValidationFailed
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, rows


@dataclass(frozen=True)
class NewKey:
    """A key as created: ``secret`` is shown this once and never stored."""

    key: dict[str, Any]
    secret: str


def public_key_view(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "secret_sha256"}


async def active_admin_count(connection: AsyncConnection, now: datetime) -> int:
    statement = select(rows.API_KEYS.c.roles, rows.API_KEYS.c.expires_at).where(
        rows.API_KEYS.c.revoked_at.is_(None)
    )
    found = 0
    for roles, expires_at in (await connection.execute(statement)).all():
        if "admin" in roles and (expires_at is None or expires_at > now):
            found += 1
    return found


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
        bad = unknown_roles(roles)
        if bad:
            raise ValidationFailed(f"unknown role(s): {', '.join(bad)}")
        if not roles:
            raise ValidationFailed("a key needs at least one role")
        now = self._ctx.clock.now()
        secret = new_secret()
        record = {
            "id": new_id("api_key"),
            "name": name,
            "prefix": display_prefix(secret),
            "secret_sha256": digest(secret),
            "roles": sorted(set(roles)),
            "created_by": actor.name,
            "created_at": now,
            "expires_at": now + expires_in if expires_in else None,
            "revoked_at": None,
            "last_used_at": None,
        }
        if connection is not None:
            await self._insert(connection, record, actor, request, now)
        else:
            async with unit_of_work(self._ctx.engine) as uow:
                await self._insert(uow.connection, record, actor, request, now)
        return NewKey(key=public_key_view(record), secret=secret)

    async def _insert(
        self,
        connection: AsyncConnection,
        record: dict[str, Any],
        actor: Actor,
        request: RequestInfo | None,
        now: datetime,
    ) -> None:
        await rows.add(connection, rows.API_KEYS, record)
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
                        "roles": record["roles"],
                        "expires_at": str(record["expires_at"]),
                    },
                )
            ],
        )

    async def list(self) -> list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            return [
                public_key_view(r)
                for r in await rows.list_all(connection, rows.API_KEYS, order_by="created_at")
            ]

    async def get(self, key_id: str) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            row = await rows.get(connection, rows.API_KEYS, key_id)
        if row is None:
            raise NotFound(f"API key {key_id!r} does not exist")
        return public_key_view(row)

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
            if "admin" in row["roles"] and await active_admin_count(uow.connection, now) <= 1:
                raise Conflict("this is the last admin key; create another admin key before revoking it")
            await rows.change(uow.connection, rows.API_KEYS, row["id"], {"revoked_at": now})
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
            actor = Actor(id="bootstrap", name="bootstrap-token", type="bootstrap")
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
