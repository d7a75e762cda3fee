"""Issuance policies: manage them (validated, audited), enforce them before signing, and find the
existing certificates that break one.

:meth:`PolicyService.enforce` is the single gate every issuing path calls after the profile checks and
before signing. A blocking outcome refuses the request with a 422 ``policy-violation`` problem that names
each broken rule, after writing one ``policy.blocked`` audit row in a transaction of its own (the refused
request itself writes nothing). Warnings are returned for the caller's own audit row.

The enabled policies are cached in-process for ``cache_ttl_seconds`` (like profiles and issuers) so that
the issuing hot path needs no database round trip; a change made through this process invalidates the
cache at once, another replica's change is seen within the TTL.
"""

from __future__ import annotations

import builtins
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from certctl.domain.policy import (
    IssuanceFacts,
    Policy,
    RuleError,
    RuleOutcome,
    blocking,
    evaluate,
    parse_rules,
    rules_to_json,
    warnings,
)
from certctl.errors import Conflict, NotFound, PolicyBlocked, ValidationFailed
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.catalog import CatalogKind, CatalogService
from certctl.services.context import ServiceContext
from certctl.services.policy_facts import inventory_facts
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, rows
from certctl.store.repositories import policies as policy_rows
from certctl.store.repositories.certificates import decode_cursor, encode_cursor

log = logging.getLogger("certctl.policy")

POLICIES = CatalogKind("policy", policy_rows.POLICIES, None, has_updated_at=True)
SCAN_PAGE = 200
"""Certificates read per query by the violations view: memory stays flat however large the inventory."""


@dataclass(frozen=True)
class EnabledPolicies:
    policies: tuple[Policy, ...]
    unreadable: tuple[RuleOutcome, ...]
    """Stored policies whose rules no longer validate: they block (fail closed) until fixed or disabled."""


def _to_policy(row: dict[str, Any]) -> Policy:
    return Policy(id=row["id"], name=row["name"], rules=parse_rules(row["rules"]))


def _unreadable(row: dict[str, Any], error: RuleError) -> RuleOutcome:
    return RuleOutcome(
        policy_id=row["id"],
        policy_name=row["name"],
        rule_number=0,
        rule_type="unreadable",
        mode="block",
        message=f"the stored rules do not validate ({error}); fix or disable the policy",
    )


class PolicyCache:
    """The parsed enabled policies for a few seconds. A load that raced an invalidation is not kept."""

    def __init__(self, ttl_seconds: float) -> None:
        self._ttl = ttl_seconds
        self._entry: tuple[float, EnabledPolicies] | None = None
        self._generation = 0

    def invalidate(self) -> None:
        self._generation += 1
        self._entry = None

    async def enabled(
        self, engine: AsyncEngine, connection: AsyncConnection | None = None
    ) -> EnabledPolicies:
        """From the cache, else loaded through ``connection`` (a caller inside a transaction passes its own,
        so a full pool cannot leave it waiting for a second one) or a short read-only one."""
        if self._entry is not None and time.monotonic() - self._entry[0] < self._ttl:
            return self._entry[1]
        generation = self._generation
        if connection is not None:
            found = await policy_rows.list_enabled(connection)
        else:
            async with read_only(engine) as reader:
                found = await policy_rows.list_enabled(reader)
        policies: list[Policy] = []
        unreadable: list[RuleOutcome] = []
        for row in found:
            try:
                policies.append(_to_policy(row))
            except RuleError as exc:
                log.error("policy %s has rules that do not validate: %s", row["name"], exc)
                unreadable.append(_unreadable(row, exc))
        loaded = EnabledPolicies(tuple(policies), tuple(unreadable))
        if generation == self._generation:
            self._entry = (time.monotonic(), loaded)
        return loaded


class PolicyService:
    """CRUD through the generic catalogue service (validated by ``_prepare``, audited as ``policy.*``),
    the issuance gate, and the violations view."""

    def __init__(self, context: ServiceContext) -> None:
        self._ctx = context
        self.cache = PolicyCache(context.cache_ttl_seconds)
        self._catalog = CatalogService(context, POLICIES, prepare=self._prepare)

    async def _prepare(self, _connection: AsyncConnection, record: dict[str, Any]) -> dict[str, Any]:
        """Validate and canonicalise the rules before they are stored (whatever the caller). Only a
        disabled policy may keep rules that no longer validate, so a broken one can be switched off."""
        try:
            rules = parse_rules(record.get("rules", []))
        except RuleError as exc:
            if record.get("enabled") is False:
                self.cache.invalidate()
                return record
            raise ValidationFailed(f"the policy rules are not valid: {exc}") from exc
        self.cache.invalidate()
        return record | {"rules": rules_to_json(rules)}

    async def list(self) -> list[dict[str, Any]]:
        return await self._catalog.list()

    async def get(self, ref: str) -> dict[str, Any]:
        return await self._catalog.get(ref)

    async def create(
        self, *, values: dict[str, Any], actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        try:
            return await self._catalog.create(values=values, actor=actor, request=request)
        finally:
            self.cache.invalidate()

    async def update(
        self, *, ref: str, values: dict[str, Any], actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        try:
            return await self._catalog.update(ref=ref, values=values, actor=actor, request=request)
        finally:
            self.cache.invalidate()

    async def delete(self, *, ref: str, actor: Actor, request: RequestInfo | None = None) -> None:
        try:
            await self._catalog.delete(ref=ref, actor=actor, request=request)
        finally:
            self.cache.invalidate()

    async def enforce(
        self,
        facts: IssuanceFacts,
        *,
        actor: Actor,
        request: RequestInfo | None = None,
        connection: AsyncConnection | None = None,
    ) -> builtins.list[RuleOutcome]:
        """Evaluate the enabled policies. Blocked: audit ``policy.blocked`` and raise ``PolicyBlocked`` (a
        ``PolicyViolation``, 422) naming every blocking rule. Otherwise return the warnings (maybe none).
        ``connection``: the caller's open transaction, used to load the policies on a cold cache."""
        enabled = await self.cache.enabled(self._ctx.engine, connection)
        outcomes = [*enabled.unreadable, *evaluate(enabled.policies, facts)]
        refused = blocking(outcomes)
        if not refused:
            return outcomes
        violations = [outcome.as_dict() for outcome in refused]
        noted = [outcome.as_dict() for outcome in warnings(outcomes)]
        await self._record_block(facts, violations, noted, actor, request)
        message = "blocked by " + "; ".join(outcome.describe() for outcome in refused)
        extra: dict[str, Any] = {"violations": violations}
        if noted:
            extra["warnings"] = noted
        raise PolicyBlocked(message, extra=extra)

    async def _record_block(
        self,
        facts: IssuanceFacts,
        violations: builtins.list[dict[str, Any]],
        noted: builtins.list[dict[str, Any]],
        actor: Actor,
        request: RequestInfo | None,
    ) -> None:
        record = audit_record(
            actor=actor,
            action="policy.blocked",
            resource_type="certificate",
            resource_id=facts.certificate_id or facts.name,
            at=self._ctx.clock.now(),
            request=request,
            details={
                "name": facts.name,
                "environment": facts.environment,
                "source": facts.source,
                "issuer": facts.issuer_name,
                "profile": facts.profile_name,
                "names": list(facts.names) + list(facts.ip_addresses),
                "violations": violations,
                "warnings": noted,
            },
            outcome="denied",
        )
        try:
            async with unit_of_work(self._ctx.engine) as uow:
                await audit.append(uow.connection, [record])
        except Exception:  # the refusal must still be answered even if the trail cannot be written
            log.exception("could not write the audit row for a policy refusal")

    async def violations(
        self, *, ref: str, actor: Actor, cursor: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """Live certificates (current version) that break policy ``ref``, in id order, up to ``limit`` per
        call with a cursor for the rest. Warn-mode rules are reported too (marked by ``mode``); a disabled
        policy is judged as if it were enabled, to preview it. Certificates outside the actor's
        ``cert.read`` grants are left out."""
        after = decode_cursor(cursor, "id")[1] if cursor else None
        items: builtins.list[dict[str, Any]] = []
        exhausted = False
        async with read_only(self._ctx.engine) as connection:
            row = await rows.find(connection, policy_rows.POLICIES, ref)
            if row is None:
                raise NotFound(f"policy {ref!r} does not exist")
            try:
                policy = _to_policy(row)
            except RuleError as exc:
                raise Conflict(f"policy {row['name']!r} has rules that do not validate: {exc}") from exc
            while len(items) < limit and not exhausted:
                page = await policy_rows.inventory_page(connection, after_id=after, limit=SCAN_PAGE)
                exhausted = len(page) < SCAN_PAGE
                for index, certificate in enumerate(page):
                    after = certificate["id"]
                    found = self._judge(policy, certificate, actor)
                    if found is not None:
                        items.append(found)
                    if len(items) >= limit:
                        exhausted = exhausted and index == len(page) - 1
                        break
        return {
            "policy": {"id": row["id"], "name": row["name"], "enabled": row["enabled"]},
            "items": items,
            "next_cursor": None if exhausted or after is None else encode_cursor(after, after),
        }

    @staticmethod
    def _judge(policy: Policy, certificate: dict[str, Any], actor: Actor) -> dict[str, Any] | None:
        scope = {"profile_id": certificate["profile_id"], "issuer_id": certificate["issuer_id"]}
        if not actor.access.allows("cert.read", **scope):
            return None
        outcomes = evaluate([policy], inventory_facts(certificate))
        if not outcomes:
            return None
        return {
            "certificate_id": certificate["id"],
            "name": certificate["name"],
            "status": certificate["status"],
            "environment": certificate["environment"],
            "issuer": certificate["issuer_name"],
            "profile": certificate["profile_name"],
            "not_after": certificate["version_not_after"],
            "violations": [outcome.as_dict() for outcome in outcomes],
        }
