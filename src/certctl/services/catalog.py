"""Create, change and delete the catalogue objects (teams, owners, profiles, issuers), audited."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.ids import new_id
from certctl.errors import Conflict, NotFound
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.services.visibility import require_on_catalog
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, rows

Hook = Callable[[AsyncConnection, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class CatalogKind:
    kind: str
    """Resource name in ids, audit rows and messages (``team``, ``owner``, ``profile``, ``issuer``)."""
    table: Table
    referenced_by: str | None
    """Column of managed_certificates that points here; delete refuses while certificates use the row."""
    has_updated_at: bool = False
    hidden: tuple[str, ...] = ()
    scopable: bool = False
    """Profiles and issuers: grants scoped to one of them decide who sees and changes it."""


def _present(kind: CatalogKind, row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in kind.hidden}


class CatalogService:
    def __init__(self, context: ServiceContext, kind: CatalogKind, *, prepare: Hook | None = None) -> None:
        self._ctx = context
        self.kind = kind
        self._prepare = prepare

    async def list(self, *, actor: Actor | None = None) -> list[dict[str, Any]]:
        """Every row, or with an actor only those its grants let it read."""
        async with read_only(self._ctx.engine) as connection:
            found = await rows.list_all(connection, self.kind.table)
        if actor is not None and self.kind.scopable:
            found = [r for r in found if self._visible(actor, r)]
        return [_present(self.kind, r) for r in found]

    async def get(self, ref: str, *, actor: Actor | None = None) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            row = await rows.find(connection, self.kind.table, ref)
        if row is None:
            raise NotFound(f"{self.kind.kind} {ref!r} does not exist")
        self._require(actor, "read", row)
        return _present(self.kind, row)

    def _visible(self, actor: Actor, row: dict[str, Any]) -> bool:
        scope = {"profile_id": row["id"]} if self.kind.kind == "profile" else {"issuer_id": row["id"]}
        return actor.access.allows(f"{self.kind.kind}.read", **scope)

    def _require(self, actor: Actor | None, verb: str, row: dict[str, Any]) -> None:
        if actor is not None and self.kind.scopable:
            require_on_catalog(actor, f"{self.kind.kind}.{verb}", kind=self.kind.kind, row=row)

    async def create(
        self, *, values: dict[str, Any], actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            if await rows.get_by_name(uow.connection, self.kind.table, values["name"]):
                raise Conflict(f"a {self.kind.kind} named {values['name']!r} already exists")
            record = {"id": new_id(self.kind.kind), **values, "created_at": now}
            if self.kind.has_updated_at:
                record["updated_at"] = now
            if self._prepare is not None:
                record = await self._prepare(uow.connection, record)
            await rows.add(uow.connection, self.kind.table, record)
            await self._audit(
                uow.connection, "create", record["id"], actor, request, {"name": values["name"]}
            )
        return _present(self.kind, record)

    async def update(
        self,
        *,
        ref: str,
        values: dict[str, Any],
        actor: Actor,
        request: RequestInfo | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``details`` go into the audit row too (an approved change names its approval and approver)."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await rows.find(uow.connection, self.kind.table, ref)
            if row is None:
                raise NotFound(f"{self.kind.kind} {ref!r} does not exist")
            self._require(actor, "edit", row)
            renamed = "name" in values and values["name"] != row["name"]
            if renamed and await rows.get_by_name(uow.connection, self.kind.table, values["name"]):
                raise Conflict(f"a {self.kind.kind} named {values['name']!r} already exists")
            record = row | values
            if self.kind.has_updated_at:
                record["updated_at"] = now
            if self._prepare is not None:
                record = await self._prepare(uow.connection, record)
            changed = {k: v for k, v in record.items() if row.get(k) != v}
            if changed:
                await rows.change(uow.connection, self.kind.table, row["id"], changed)
                await self._audit(
                    uow.connection,
                    "update",
                    row["id"],
                    actor,
                    request,
                    {"fields": sorted(set(changed) - {"updated_at"})} | (details or {}),
                )
        return _present(self.kind, record)

    async def delete(
        self,
        *,
        ref: str,
        actor: Actor,
        request: RequestInfo | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        async with unit_of_work(self._ctx.engine) as uow:
            row = await rows.find(uow.connection, self.kind.table, ref)
            if row is None:
                raise NotFound(f"{self.kind.kind} {ref!r} does not exist")
            self._require(actor, "delete", row)
            if self.kind.referenced_by:
                used = await rows.certificates_referencing(uow.connection, self.kind.referenced_by, row["id"])
                if used:
                    raise Conflict(f"{self.kind.kind} {row['name']!r} is used by {used} certificate(s)")
            await rows.remove(uow.connection, self.kind.table, row["id"])
            await self._audit(
                uow.connection, "delete", row["id"], actor, request, {"name": row["name"]} | (details or {})
            )

    async def _audit(
        self,
        connection: AsyncConnection,
        verb: str,
        resource_id: str,
        actor: Actor,
        request: RequestInfo | None,
        details: dict[str, Any],
    ) -> None:
        record = audit_record(
            actor=actor,
            action=f"{self.kind.kind}.{verb}",
            resource_type=self.kind.kind,
            resource_id=resource_id,
            at=self._ctx.clock.now(),
            request=request,
            details=details,
        )
        await audit.append(connection, [record])


TEAMS = CatalogKind("team", rows.TEAMS, "team_id")
OWNERS = CatalogKind("owner", rows.OWNERS, "owner_id")
PROFILES = CatalogKind("profile", rows.PROFILES, "profile_id", has_updated_at=True, scopable=True)
ISSUERS = CatalogKind(
    "issuer", rows.ISSUERS, "issuer_id", has_updated_at=True, hidden=("secrets_sealed",), scopable=True
)
