"""Agents as use cases: enrolment tokens, enrolment, heartbeat, credential rotation, retirement.

Heartbeats are written in batches (:mod:`certctl.services.agent_heartbeats`); rotation and retirement tell
the credential cache (``on_credentials_change``) so that they take effect on this process at once.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from certctl.auth.agents import digest, looks_like, new_credential, new_enrolment_token
from certctl.domain.agents import (
    CREDENTIAL_GRACE,
    ENROLMENT_TOKEN_DEFAULT_TTL,
    ENROLMENT_TOKEN_MAX_TTL,
    ENROLMENT_TOKEN_PREFIX,
    AgentStatus,
)
from certctl.domain.ids import new_id
from certctl.errors import Conflict, Gone, NotFound, Unauthenticated, ValidationFailed
from certctl.services.agent_heartbeats import HEARTBEAT_FLUSH_SECONDS, HeartbeatBuffer
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import agents, audit

PUBLIC_AGENT_FIELDS = (
    "id",
    "name",
    "status",
    "proxy",
    "hostname",
    "os",
    "arch",
    "version",
    "last_seen_at",
    "credential_rotated_at",
    "created_by",
    "created_at",
    "updated_at",
    "retired_at",
)


def public_agent(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in PUBLIC_AGENT_FIELDS}


@dataclass(frozen=True)
class HostFacts:
    hostname: str = ""
    os: str = ""
    arch: str = ""
    version: str = ""


class AgentService:
    def __init__(
        self,
        context: ServiceContext,
        *,
        on_credentials_change: Callable[[str], None] | None = None,
        heartbeat_flush_seconds: float = HEARTBEAT_FLUSH_SECONDS,
    ) -> None:
        self._ctx = context
        self._on_credentials_change = on_credentials_change or (lambda _agent_id: None)
        self._heartbeats = HeartbeatBuffer(context.engine, flush_seconds=heartbeat_flush_seconds)

    async def create_enrolment_token(
        self, *, name: str, proxy: bool, ttl: timedelta | None, actor: Actor, info: RequestInfo | None = None
    ) -> tuple[dict[str, Any], str]:
        """A one-time token (shown once) that lets one host enrol as an agent called ``name``."""
        ttl = ttl or ENROLMENT_TOKEN_DEFAULT_TTL
        if ttl <= timedelta(0) or ttl > ENROLMENT_TOKEN_MAX_TTL:
            raise ValidationFailed("an enrolment token lives between 1 second and 30 days")
        now = self._ctx.clock.now()
        token = new_enrolment_token()
        row: dict[str, Any] = {
            "id": new_id("enrol"),
            "name": name,
            "token_sha256": digest(token),
            "proxy": proxy,
            "created_by": actor.name,
            "created_at": now,
            "expires_at": now + ttl,
            "used_at": None,
            "agent_id": None,
        }
        async with unit_of_work(self._ctx.engine) as uow:
            if await agents.get_agent_by_name(uow.connection, name) is not None:
                raise Conflict(f"an agent called {name!r} exists already")
            await agents.insert_token(uow.connection, row)
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=actor,
                        action="agent.enrolment_token.create",
                        resource_type="agent_enrolment_token",
                        resource_id=row["id"],
                        at=now,
                        request=info,
                        details={"name": name, "proxy": proxy, "expires_at": row["expires_at"].isoformat()},
                    )
                ],
            )
        return {k: v for k, v in row.items() if k != "token_sha256"}, token

    async def enrol(
        self, *, token: str, facts: HostFacts, info: RequestInfo | None = None
    ) -> tuple[dict[str, Any], str]:
        """Spend the token, create the agent, return it with its credential (shown once)."""
        if not looks_like(token, ENROLMENT_TOKEN_PREFIX):
            raise Unauthenticated("the enrolment token is not valid (unknown, used or expired)")
        now = self._ctx.clock.now()
        agent_id = new_id("agent")
        credential = new_credential()
        async with unit_of_work(self._ctx.engine) as uow:
            spent = await agents.use_token(
                uow.connection, token_sha256=digest(token), now=now, agent_id=agent_id
            )
            if spent is None:
                raise Unauthenticated("the enrolment token is not valid (unknown, used or expired)")
            if await agents.get_agent_by_name(uow.connection, spent["name"]) is not None:
                raise Conflict(f"an agent called {spent['name']!r} exists already")
            row = {
                "id": agent_id,
                "name": spent["name"],
                "status": str(AgentStatus.ACTIVE),
                "proxy": spent["proxy"],
                "hostname": facts.hostname[:255],
                "os": facts.os[:100],
                "arch": facts.arch[:50],
                "version": facts.version[:50],
                "credential_sha256": digest(credential),
                "previous_credential_sha256": None,
                "previous_valid_until": None,
                "credential_rotated_at": now,
                "last_seen_at": now,
                "created_by": spent["created_by"],
                "created_at": now,
                "updated_at": now,
                "retired_at": None,
            }
            await agents.insert_agent(uow.connection, row)
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=Actor(id=agent_id, name=f"agent:{spent['name']}", type="agent"),
                        action="agent.enrol",
                        resource_type="agent",
                        resource_id=agent_id,
                        at=now,
                        request=info,
                        details={"name": spent["name"], "hostname": row["hostname"], "token": spent["id"]},
                    )
                ],
            )
        return public_agent(row), credential

    async def heartbeat(self, *, agent_id: str, facts: HostFacts) -> None:
        """Record that the agent (authenticated and active) is alive and what it runs on: kept in memory
        and written with the other heartbeats within a second (``flush_heartbeats``)."""
        values = {
            "hostname": facts.hostname[:255],
            "os": facts.os[:100],
            "arch": facts.arch[:50],
            "version": facts.version[:50],
        }
        self._heartbeats.add(agent_id=agent_id, facts=values, seen_at=self._ctx.clock.now())

    async def flush_heartbeats(self) -> int:
        """Write the heartbeats not written yet; how many. Reads of the registry do it first."""
        return await self._heartbeats.flush()

    async def rotate(
        self, *, agent_id: str, actor: Actor, info: RequestInfo | None = None
    ) -> tuple[dict[str, Any], str]:
        """A new credential; the previous one keeps working for a short grace period."""
        now = self._ctx.clock.now()
        credential = new_credential()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await self._active(uow.connection, agent_id)
            values = {
                "credential_sha256": digest(credential),
                "previous_credential_sha256": row["credential_sha256"],
                "previous_valid_until": now + CREDENTIAL_GRACE,
                "credential_rotated_at": now,
                "updated_at": now,
            }
            await agents.update_agent(uow.connection, agent_id, values)
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=actor,
                        action="agent.credential.rotate",
                        resource_type="agent",
                        resource_id=agent_id,
                        at=now,
                        request=info,
                    )
                ],
            )
        self._on_credentials_change(agent_id)
        return public_agent(row | values), credential

    async def retire(
        self, *, agent_ref: str, actor: Actor, info: RequestInfo | None = None
    ) -> dict[str, Any]:
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await self._find(uow.connection, agent_ref)
            if row["status"] == AgentStatus.RETIRED:
                raise Conflict(f"agent {row['name']!r} is retired already")
            values = {
                "status": str(AgentStatus.RETIRED),
                "retired_at": now,
                "updated_at": now,
                "previous_credential_sha256": None,
                "previous_valid_until": None,
            }
            await agents.update_agent(uow.connection, row["id"], values)
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=actor,
                        action="agent.retire",
                        resource_type="agent",
                        resource_id=row["id"],
                        at=now,
                        request=info,
                        details={"name": row["name"]},
                    )
                ],
            )
        self._on_credentials_change(row["id"])
        return public_agent(row | values)

    async def get(self, agent_ref: str) -> dict[str, Any]:
        await self.flush_heartbeats()
        async with read_only(self._ctx.engine) as connection:
            return public_agent(await self._find(connection, agent_ref))

    async def list(self, *, status: str | None = None) -> builtins.list[dict[str, Any]]:
        await self.flush_heartbeats()
        async with read_only(self._ctx.engine) as connection:
            return [public_agent(row) for row in await agents.list_agents(connection, status=status)]

    async def list_tokens(self) -> builtins.list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            rows = await agents.list_tokens(connection)
        return [{k: v for k, v in row.items() if k != "token_sha256"} for row in rows]

    async def _find(self, connection: Any, ref: str) -> dict[str, Any]:
        row = await agents.get_agent(connection, ref) or await agents.get_agent_by_name(connection, ref)
        if row is None:
            raise NotFound(f"agent {ref!r} does not exist")
        return row

    async def _active(self, connection: Any, agent_id: str) -> dict[str, Any]:
        row = await self._find(connection, agent_id)
        if row["status"] == AgentStatus.RETIRED:
            raise Gone(f"agent {row['name']!r} is retired")
        return row
