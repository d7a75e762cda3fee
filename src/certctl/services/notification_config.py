"""Notification channels and routing rules: create, change, delete, list.

A channel's ``secrets`` are validated by its connector's secrets model, sealed with the master key
(bound to the channel id) and never returned: reads say only which secret fields are set. A change that
gives ``secrets`` merges them over the stored ones, so one password can be rotated alone.
"""

from __future__ import annotations

import builtins
import json
import secrets as random
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.connectors.notifiers.base import NotifierConnector, discover_notifiers
from certctl.domain.notifications import EventType, Severity
from certctl.errors import Conflict, NotFound, SealedSecretUnavailable, ValidationFailed
from certctl.keys.envelope import MasterKey, SealError
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, rows
from certctl.store.repositories.notifications import CHANNELS, RULES, rules_naming_channel


def _aad(channel_id: str) -> bytes:
    return f"notification-channel:{channel_id}".encode()


def open_secrets(master_key: MasterKey, channel: dict[str, Any]) -> dict[str, Any]:
    try:
        opened = master_key.open(channel["secrets_sealed"], aad=_aad(channel["id"]))
    except SealError as exc:
        raise SealedSecretUnavailable(f"the secrets of channel {channel['name']!r} do not open") from exc
    loaded: dict[str, Any] = json.loads(opened)
    return loaded


def connector_for(master_key: MasterKey, channel: dict[str, Any]) -> NotifierConnector:
    entry = discover_notifiers().get(channel["type"])
    if entry is None or entry.connector is None:
        raise ValidationFailed(f"notifier type {channel['type']!r} is not available")
    kind = entry.connector
    options = kind.options_model.model_validate(channel["options"])
    return kind(options, kind.secrets_model.model_validate(open_secrets(master_key, channel)))


def public_channel(channel: dict[str, Any], secret_names: builtins.list[str]) -> dict[str, Any]:
    shown = {k: channel[k] for k in ("id", "name", "type", "options", "enabled", "created_at", "updated_at")}
    return shown | {"secrets_set": sorted(secret_names)}


def _check(kind_name: str, options: dict[str, Any], secret_values: dict[str, Any]) -> dict[str, Any]:
    entry = discover_notifiers().get(kind_name)
    if entry is None or entry.connector is None:
        known = ", ".join(sorted(name for name, e in discover_notifiers().items() if not e.broken))
        raise ValidationFailed(f"unknown notifier type {kind_name!r} (available: {known})")
    try:
        checked = entry.connector.options_model.model_validate(options).model_dump(mode="json")
    except ValidationError as exc:
        raise ValidationFailed(f"channel options are not valid: {exc.errors(include_input=False)}") from None
    try:
        entry.connector.secrets_model.model_validate(secret_values)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise ValidationFailed(f"channel secrets are not valid (fields: {', '.join(fields)})") from None
    return checked


class NotificationConfigService:
    def __init__(self, context: ServiceContext) -> None:
        self._ctx = context

    async def list_channels(self) -> builtins.list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            found = await rows.list_all(connection, CHANNELS)
        return [public_channel(c, list(open_secrets(self._ctx.master_key, c))) for c in found]

    async def get_channel(self, ref: str) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            channel = await self._channel(connection, ref)
        return public_channel(channel, list(open_secrets(self._ctx.master_key, channel)))

    async def channel_row(self, ref: str) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            return await self._channel(connection, ref)

    async def create_channel(
        self, *, values: dict[str, Any], actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        now = self._ctx.clock.now()
        secret_values = dict(values.get("secrets") or {})
        options = _check(values["type"], dict(values.get("options") or {}), secret_values)
        channel_id = f"nch_{random.token_hex(10)}"
        record = {
            "id": channel_id,
            "name": values["name"],
            "type": values["type"],
            "options": options,
            "secrets_sealed": self._seal(channel_id, secret_values),
            "enabled": bool(values.get("enabled", True)),
            "created_at": now,
            "updated_at": now,
        }
        async with unit_of_work(self._ctx.engine) as uow:
            if await rows.get_by_name(uow.connection, CHANNELS, record["name"]) is not None:
                raise Conflict(f"a channel named {record['name']!r} exists already")
            await rows.add(uow.connection, CHANNELS, record)
            await self._audit(uow.connection, "notification.channel.create", record, actor, request)
        return public_channel(record, list(secret_values))

    async def update_channel(
        self, *, ref: str, values: dict[str, Any], actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        async with unit_of_work(self._ctx.engine) as uow:
            channel = await self._channel(uow.connection, ref)
            secret_values = open_secrets(self._ctx.master_key, channel) | dict(values.get("secrets") or {})
            options = values["options"] if values.get("options") is not None else channel["options"]
            changes: dict[str, Any] = {"options": _check(channel["type"], options, secret_values)}
            changes["secrets_sealed"] = self._seal(channel["id"], secret_values)
            for key in ("name", "enabled"):
                if values.get(key) is not None:
                    changes[key] = values[key]
            changes["updated_at"] = self._ctx.clock.now()
            await rows.change(uow.connection, CHANNELS, channel["id"], changes)
            updated = channel | changes
            await self._audit(uow.connection, "notification.channel.update", updated, actor, request)
        return public_channel(updated, list(secret_values))

    async def delete_channel(self, *, ref: str, actor: Actor, request: RequestInfo | None = None) -> None:
        async with unit_of_work(self._ctx.engine) as uow:
            channel = await self._channel(uow.connection, ref)
            users = await rules_naming_channel(uow.connection, channel["id"])
            if users:
                raise Conflict(f"channel {channel['name']!r} is used by rules: {', '.join(users)}")
            await rows.remove(uow.connection, CHANNELS, channel["id"])
            await self._audit(uow.connection, "notification.channel.delete", channel, actor, request)

    async def list_rules(self) -> builtins.list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            return await rows.list_all(connection, RULES)

    async def get_rule(self, ref: str) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            return await self._rule(connection, ref)

    async def create_rule(
        self, *, values: dict[str, Any], actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        now = self._ctx.clock.now()
        record = {
            "id": f"nrl_{random.token_hex(10)}",
            "event_types": [],
            "min_severity": "info",
            "team_id": None,
            "owner_id": None,
            "enabled": True,
        } | values
        record |= {"created_at": now, "updated_at": now}
        async with unit_of_work(self._ctx.engine) as uow:
            if await rows.get_by_name(uow.connection, RULES, record["name"]) is not None:
                raise Conflict(f"a rule named {record['name']!r} exists already")
            await self._check_rule(uow.connection, record)
            await rows.add(uow.connection, RULES, record)
            await self._audit(uow.connection, "notification.rule.create", record, actor, request)
        return record

    async def update_rule(
        self, *, ref: str, values: dict[str, Any], actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        async with unit_of_work(self._ctx.engine) as uow:
            rule = await self._rule(uow.connection, ref)
            changes = values | {"updated_at": self._ctx.clock.now()}
            updated = rule | changes
            await self._check_rule(uow.connection, updated)
            await rows.change(uow.connection, RULES, rule["id"], changes)
            await self._audit(uow.connection, "notification.rule.update", updated, actor, request)
        return updated

    async def delete_rule(self, *, ref: str, actor: Actor, request: RequestInfo | None = None) -> None:
        async with unit_of_work(self._ctx.engine) as uow:
            rule = await self._rule(uow.connection, ref)
            await rows.remove(uow.connection, RULES, rule["id"])
            await self._audit(uow.connection, "notification.rule.delete", rule, actor, request)

    def _seal(self, channel_id: str, secret_values: dict[str, Any]) -> bytes:
        return self._ctx.master_key.seal(json.dumps(secret_values).encode(), aad=_aad(channel_id))

    async def _check_rule(self, connection: AsyncConnection, rule: dict[str, Any]) -> None:
        known = {str(t) for t in EventType if t is not EventType.TEST}
        unknown = sorted(set(rule["event_types"]) - known)
        if unknown:
            raise ValidationFailed(f"unknown event types {unknown}; choose from {sorted(known)}")
        try:
            Severity.parse(rule["min_severity"])
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from None
        if not rule["channel_ids"]:
            raise ValidationFailed("a rule needs at least one channel")
        for channel_id in rule["channel_ids"]:
            if await rows.get(connection, CHANNELS, channel_id) is None:
                raise ValidationFailed(f"channel {channel_id!r} does not exist")
        for table, column in ((rows.TEAMS, "team_id"), (rows.OWNERS, "owner_id")):
            if rule[column] is not None and await rows.get(connection, table, rule[column]) is None:
                raise ValidationFailed(f"{column.removesuffix('_id')} {rule[column]!r} does not exist")

    async def _channel(self, connection: AsyncConnection, ref: str) -> dict[str, Any]:
        found = await rows.find(connection, CHANNELS, ref)
        if found is None:
            raise NotFound(f"notification channel {ref!r} does not exist")
        return found

    async def _rule(self, connection: AsyncConnection, ref: str) -> dict[str, Any]:
        found = await rows.find(connection, RULES, ref)
        if found is None:
            raise NotFound(f"notification rule {ref!r} does not exist")
        return found

    async def _audit(
        self,
        connection: AsyncConnection,
        action: str,
        record: dict[str, Any],
        actor: Actor,
        request: RequestInfo | None,
    ) -> None:
        details = {"name": record["name"]} | ({"type": record["type"]} if "type" in record else {})
        event = audit_record(
            actor=actor,
            action=action,
            resource_type="notification",
            resource_id=record["id"],
            at=self._ctx.clock.now(),
            request=request,
            details=details,
        )
        await audit.append(connection, [event])
