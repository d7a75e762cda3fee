"""Deployment targets as use cases: create, change, delete, test, and the options an agent receives.

Options are validated with the target type's own model (the same one the agent validates with again);
secret options are sealed with the master key, never returned, and decrypted only into the work an
agent fetches for a target it serves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from certctl.agent.targets import TargetConfigError, parse_options, registry, secret_fields, target_type
from certctl.domain.agents import AgentStatus
from certctl.domain.ids import new_id
from certctl.errors import Conflict, NotFound, ValidationFailed
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import agents, audit


def _aad(target_id: str) -> bytes:
    return f"target:{target_id}".encode()


def public_target(row: dict[str, Any]) -> dict[str, Any]:
    secrets = sorted(json.loads(row["_secret_names"])) if "_secret_names" in row else []
    return {
        "id": row["id"],
        "name": row["name"],
        "type": row["type"],
        "agent_id": row["agent_id"],
        "description": row["description"],
        "options": row["options"],
        "secrets_set": secrets,
        "last_check": row.get("last_check"),
        "check_requested_at": row.get("check_requested_at"),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def target_types() -> list[dict[str, Any]]:
    """Every registered type with its JSON schema, and the types that failed to load."""
    loaded, broken = registry()
    listed = [
        {
            "name": kind.name,
            "description": kind.description,
            "agentless": kind.agentless,
            "secrets": sorted(secret_fields(kind.name)),
            "options_schema": kind.options_model.model_json_schema(),
            "broken": None,
        }
        for kind in loaded.values()
    ]
    listed += [{"name": b.name, "broken": b.error} for b in broken.values()]
    return sorted(listed, key=lambda item: str(item["name"]))


def _split(type_name: str, raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    try:
        model = parse_options(type_name, raw)
    except TargetConfigError as exc:
        raise ValidationFailed(str(exc)) from None
    secret_names = secret_fields(type_name)
    secrets: dict[str, str] = {}
    for name in secret_names:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            secrets[name] = value.get_secret_value()
    shown = model.model_dump(mode="json", exclude_unset=True, exclude=set(secret_names))
    return shown, secrets


class TargetService:
    def __init__(self, context: ServiceContext) -> None:
        self._ctx = context

    async def create(
        self,
        *,
        name: str,
        type: str,
        agent_ref: str,
        options: Mapping[str, Any],
        description: str,
        actor: Actor,
        info: RequestInfo | None = None,
    ) -> dict[str, Any]:
        kind = self._type(type)
        shown, secrets = _split(type, options)
        now = self._ctx.clock.now()
        target_id = new_id("target")
        async with unit_of_work(self._ctx.engine) as uow:
            agent = await self._agent(uow.connection, agent_ref)
            if kind.agentless and not agent["proxy"]:
                raise ValidationFailed(f"{type} targets are agentless: choose a proxy agent to serve them")
            if await agents.get_target(uow.connection, name) is not None:
                raise Conflict(f"a target called {name!r} exists already")
            row = {
                "id": target_id,
                "name": name,
                "type": type,
                "agent_id": agent["id"],
                "description": description,
                "options": shown,
                "secrets_sealed": self._seal(target_id, secrets),
                "check_requested_at": now,
                "last_check": None,
                "created_at": now,
                "updated_at": now,
            }
            await agents.insert_target(uow.connection, row)
            await self._audit(
                uow.connection, actor, "target.create", row, info, {"type": type, "agent": agent["name"]}
            )
        return public_target(row | {"_secret_names": json.dumps(sorted(secrets))})

    async def update(
        self,
        *,
        target_ref: str,
        options: Mapping[str, Any] | None,
        description: str | None,
        actor: Actor,
        info: RequestInfo | None = None,
    ) -> dict[str, Any]:
        """Options merge over the stored ones (secrets too: an absent secret keeps its value); the result
        is validated as a whole."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await self._find(uow.connection, target_ref)
            old_secrets = self._open(row)
            changes: dict[str, Any] = {"updated_at": now}
            secrets = old_secrets
            if options is not None:
                merged = {**row["options"], **old_secrets, **options}
                shown, secrets = _split(row["type"], merged)
                changes |= {
                    "options": shown,
                    "secrets_sealed": self._seal(row["id"], secrets),
                    "check_requested_at": now,
                }
            if description is not None:
                changes["description"] = description
            await agents.update_target(uow.connection, row["id"], changes)
            await self._audit(
                uow.connection, actor, "target.update", row, info, {"changed": sorted(set(options or {}))}
            )
        return public_target(row | changes | {"_secret_names": json.dumps(sorted(secrets))})

    async def delete(self, *, target_ref: str, actor: Actor, info: RequestInfo | None = None) -> None:
        async with unit_of_work(self._ctx.engine) as uow:
            row = await self._find(uow.connection, target_ref)
            mapped = await agents.count_mappings_of_target(uow.connection, row["id"])
            if mapped:
                raise Conflict(
                    f"target {row['name']!r} is mapped to {mapped} certificate(s); unmap them first"
                )
            await agents.delete_target(uow.connection, row["id"])
            await self._audit(uow.connection, actor, "target.delete", row, info, {})

    async def request_check(
        self, *, target_ref: str, actor: Actor, info: RequestInfo | None = None
    ) -> dict[str, Any]:
        """Ask the serving agent to test the target at its next poll; the result lands in ``last_check``."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await self._find(uow.connection, target_ref)
            await agents.update_target(uow.connection, row["id"], {"check_requested_at": now})
            await self._audit(uow.connection, actor, "target.test", row, info, {})
        return await self.get(row["id"])

    async def record_check(self, *, agent_id: str, target_id: str, ok: bool, message: str) -> None:
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await self._find(uow.connection, target_id)
            if row["agent_id"] != agent_id:
                raise NotFound(f"target {target_id!r} is not served by this agent")
            result = {"ok": ok, "message": message[:1000], "at": now.isoformat()}
            await agents.update_target(
                uow.connection, row["id"], {"last_check": result, "check_requested_at": None}
            )

    async def get(self, target_ref: str) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            row = await self._find(connection, target_ref)
        return public_target(row | {"_secret_names": json.dumps(sorted(self._open(row)))})

    async def list(self, *, agent_ref: str | None = None, type: str | None = None) -> list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            agent_id = (await self._agent(connection, agent_ref, active=False))["id"] if agent_ref else None
            rows = await agents.list_targets(connection, agent_id=agent_id, type=type)
        return [public_target(row | {"_secret_names": json.dumps(sorted(self._open(row)))}) for row in rows]

    def options_for_agent(self, row: dict[str, Any]) -> dict[str, Any]:
        """Options with secrets decrypted: only ever sent to the agent that serves the target."""
        return {**row["options"], **self._open(row)}

    def _type(self, name: str) -> Any:
        try:
            return target_type(name)
        except TargetConfigError as exc:
            raise ValidationFailed(str(exc)) from None

    def _seal(self, target_id: str, secrets: dict[str, str]) -> bytes | None:
        if not secrets:
            return None
        return self._ctx.master_key.seal(json.dumps(secrets).encode(), aad=_aad(target_id))

    def _open(self, row: dict[str, Any]) -> dict[str, str]:
        if not row["secrets_sealed"]:
            return {}
        opened: dict[str, str] = json.loads(
            self._ctx.master_key.open(row["secrets_sealed"], aad=_aad(row["id"]))
        )
        return opened

    async def _find(self, connection: Any, ref: str) -> dict[str, Any]:
        row = await agents.get_target(connection, ref)
        if row is None:
            raise NotFound(f"target {ref!r} does not exist")
        return row

    async def _agent(self, connection: Any, ref: str, *, active: bool = True) -> dict[str, Any]:
        row = await agents.get_agent(connection, ref) or await agents.get_agent_by_name(connection, ref)
        if row is None:
            raise ValidationFailed(f"agent {ref!r} does not exist")
        if active and row["status"] != AgentStatus.ACTIVE:
            raise ValidationFailed(f"agent {row['name']!r} is retired")
        return row

    async def _audit(
        self,
        connection: Any,
        actor: Actor,
        action: str,
        row: dict[str, Any],
        info: RequestInfo | None,
        details: dict[str, Any],
    ) -> None:
        record = audit_record(
            actor=actor,
            action=action,
            resource_type="target",
            resource_id=row["id"],
            at=self._ctx.clock.now(),
            request=info,
            details={"name": row["name"], **details},
        )
        await audit.append(connection, [record])
