"""Deployments as use cases: certificates whose keys live on an agent, the agent's work, CSRs it
submits, outcomes it reports, re-deploys on demand and the history per certificate.

A certificate mapped to targets is *agent-keyed*: the agent that serves its targets generates every
private key on its host and sends only a CSR. Issuance and renewal of such a certificate therefore mean
"ask the agent for a new key": open deployments without a version (key requests). When the agent's CSR
is certified, those deployments carry the new version and the agent installs it in the same cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from certctl.domain import profiles as profile_rules
from certctl.domain.agents import (
    DeploymentReason,
    DeploymentStatus,
)
from certctl.domain.ids import new_id
from certctl.domain.lifecycle import CertificateStatus
from certctl.domain.rbac import global_access
from certctl.errors import Conflict, NotFound, PolicyViolation, ValidationFailed
from certctl.pki.names import match_san_pattern
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.services.holds import Held
from certctl.services.issuance import IssuanceService
from certctl.services.issuance_subject import default_key_type, key_type_of, split_sans
from certctl.services.lookups import RowCache
from certctl.services.profiles import profile_from_row
from certctl.services.targets import TargetService
from certctl.services.visibility import require_on_certificate, require_to_issue
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import agents, audit, certificates, deployments

LIVE_VERSION = (CertificateStatus.ARCHIVED, CertificateStatus.REVOKED)


@dataclass(frozen=True)
class AgentKeyedRequest:
    name: str
    issuer: str
    profile: str
    targets: tuple[str, ...]
    common_name: str | None = None
    sans: tuple[str, ...] = ()
    owner_id: str | None = None
    team_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    environment: str = ""
    auto_renew: bool = True
    source: str = "api"


def agent_actor(agent: dict[str, Any]) -> Actor:
    """The agent acting on the one certificate it holds keys for (checked before this actor is used)."""
    return Actor(id=agent["id"], name=f"agent:{agent['name']}", type="agent", access=global_access(["admin"]))


def _deployment(
    *, certificate_id: str, target: dict[str, Any], version_id: str | None, reason: str, now: datetime
) -> dict[str, Any]:
    return {
        "id": new_id("deploy"),
        "certificate_id": certificate_id,
        "target_id": target["id"],
        "agent_id": target["agent_id"],
        "version_id": version_id,
        "reason": reason,
        "status": str(DeploymentStatus.PENDING),
        "attempts": 0,
        "claimed_until": None,
        "message": "",
        "served_fingerprint": None,
        "steps": [],
        "created_at": now,
        "updated_at": now,
        "finished_at": None,
    }


def public_deployment(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "claimed_until"}


class DeploymentService:
    def __init__(
        self,
        context: ServiceContext,
        *,
        issuance: IssuanceService,
        targets: TargetService,
        profiles: RowCache,
        issuers: RowCache,
    ) -> None:
        self._ctx = context
        self._issuance = issuance
        self._targets = targets
        self._profiles = profiles
        self._issuers = issuers

    async def create_agent_keyed(
        self, *, request: AgentKeyedRequest, actor: Actor, info: RequestInfo | None = None
    ) -> dict[str, Any]:
        """A Pending certificate whose first key the serving agent generates; the names are checked
        against the profile now, and the whole request again when the CSR arrives."""
        if not request.targets:
            raise ValidationFailed("an agent-keyed certificate needs at least one target")
        now = self._ctx.clock.now()
        dns_names, ips = split_sans(request.sans)
        if request.common_name and not dns_names and not ips:
            dns_names = (request.common_name.lower(),)
        if not dns_names and not ips:
            raise ValidationFailed("a certificate needs at least one DNS name or IP address")
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            try:
                profile_row = await self._profiles.find(connection, request.profile)
                issuer_row = await self._issuers.find(connection, request.issuer)
            except NotFound as exc:
                raise ValidationFailed(exc.message) from exc
            require_to_issue(actor, "cert.issue", profile=profile_row, issuer=issuer_row)
            _check_names(profile_from_row(profile_row), dns_names, ips)
            targets = [await self._target(connection, ref) for ref in request.targets]
            agent_id = _single_agent(targets)
            if await certificates.name_exists(connection, request.name):
                raise Conflict(f"a certificate called {request.name!r} exists already")
            certificate_id = new_id("certificate")
            record = {
                "id": certificate_id,
                "name": request.name,
                "common_name": request.common_name or "",
                "sans": list(dns_names + ips),
                "owner_id": request.owner_id,
                "team_id": request.team_id,
                "tags": request.tags,
                "environment": request.environment,
                "issuer_id": issuer_row["id"],
                "profile_id": profile_row["id"],
                "status": str(CertificateStatus.PENDING),
                "source": request.source,
                "auto_renew": request.auto_renew,
                "current_version_id": None,
                "not_after": None,
                "renewal_due_at": None,
                "key_agent_id": agent_id,
                "created_at": now,
                "updated_at": now,
            }
            await certificates.insert_certificate(connection, record)
            for target in targets:
                await agents.map_target(
                    connection, certificate_id=certificate_id, target_id=target["id"], now=now
                )
            await deployments.insert_deployments(
                connection,
                [
                    _deployment(
                        certificate_id=certificate_id,
                        target=t,
                        version_id=None,
                        reason=DeploymentReason.ISSUANCE,
                        now=now,
                    )
                    for t in targets
                ],
            )
            await self._audit(
                connection,
                actor,
                "certificate.create_agent_keyed",
                certificate_id,
                info,
                {"name": request.name, "targets": [t["name"] for t in targets], "agent": agent_id},
            )
        return record

    async def map(
        self, *, certificate_ref: str, target_ref: str, actor: Actor, info: RequestInfo | None = None
    ) -> dict[str, Any]:
        """Deploy this certificate to one more target from now on. The first mapping moves key custody to
        the target's agent: it generates a fresh key and the certificate is re-issued for it."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            certificate = await self._certificate(connection, certificate_ref)
            require_on_certificate(actor, "cert.edit", certificate)
            target = await self._target(connection, target_ref)
            holder = certificate["key_agent_id"]
            if holder is not None and holder != target["agent_id"]:
                raise Conflict(
                    f"the keys of {certificate['name']!r} are held by agent {holder}; "
                    "map it to targets that agent serves"
                )
            if not await agents.map_target(
                connection, certificate_id=certificate["id"], target_id=target["id"], now=now
            ):
                raise Conflict(f"{certificate['name']!r} is mapped to {target['name']!r} already")
            version_id = certificate["current_version_id"] if holder is not None else None
            if holder is None:
                await certificates.update_certificate(
                    connection, certificate["id"], {"key_agent_id": target["agent_id"], "updated_at": now}
                )
            row = _deployment(
                certificate_id=certificate["id"],
                target=target,
                version_id=version_id,
                reason=DeploymentReason.MAPPING,
                now=now,
            )
            await deployments.insert_deployments(connection, [row])
            await self._audit(
                connection,
                actor,
                "certificate.map_target",
                certificate["id"],
                info,
                {"target": target["name"]},
            )
        return public_deployment(row)

    async def unmap(
        self, *, certificate_ref: str, target_ref: str, actor: Actor, info: RequestInfo | None = None
    ) -> None:
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            certificate = await self._certificate(connection, certificate_ref)
            require_on_certificate(actor, "cert.edit", certificate)
            target = await self._target(connection, target_ref)
            if not await agents.unmap_target(
                connection, certificate_id=certificate["id"], target_id=target["id"]
            ):
                raise NotFound(f"{certificate['name']!r} is not mapped to {target['name']!r}")
            await deployments.supersede_open(
                connection, certificate_id=certificate["id"], target_ids=[target["id"]], now=now
            )
            await self._audit(
                connection,
                actor,
                "certificate.unmap_target",
                certificate["id"],
                info,
                {"target": target["name"]},
            )

    async def targets_of(self, *, certificate_ref: str, actor: Actor) -> list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            certificate = await self._certificate(connection, certificate_ref)
            require_on_certificate(actor, "cert.read", certificate)
            rows = await agents.targets_of_certificate(connection, certificate["id"])
        return [
            {"id": r["id"], "name": r["name"], "type": r["type"], "agent_id": r["agent_id"]} for r in rows
        ]

    async def request_keys(self, *, certificate_id: str, reason: DeploymentReason) -> int:
        """Ask the key-holding agent for a new key (renewal of an agent-keyed certificate): one key request
        per mapped target, replacing open ones. Returns how many were opened."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            certificate = await certificates.get(connection, certificate_id)
            if certificate is None:
                raise NotFound(f"certificate {certificate_id!r} does not exist")
            return await self._open_for_targets(connection, certificate, None, reason, now)

    async def renew_agent_keyed(
        self, *, certificate_ref: str, actor: Actor, info: RequestInfo | None = None
    ) -> int | None:
        """Renew-now of an agent-keyed certificate: ask its agent for a new key (the number of targets
        asked), or None when the certificate is not agent-keyed (the caller renews it itself)."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            certificate = await self._certificate(connection, certificate_ref)
            if certificate["key_agent_id"] is None:
                return None
            require_on_certificate(actor, "cert.renew", certificate)
            if certificate["status"] in LIVE_VERSION:
                raise Conflict(
                    f"certificate {certificate['name']!r} is {certificate['status']} and cannot be renewed"
                )
            opened = await self._open_for_targets(connection, certificate, None, DeploymentReason.MANUAL, now)
            await self._audit(
                connection, actor, "certificate.request_key", certificate["id"], info, {"targets": opened}
            )
        return opened

    async def redeploy(
        self,
        *,
        certificate_ref: str,
        target_ref: str | None,
        actor: Actor,
        info: RequestInfo | None = None,
    ) -> list[dict[str, Any]]:
        """Install the current version again on every mapped target (or one)."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            certificate = await self._certificate(connection, certificate_ref)
            require_on_certificate(actor, "cert.renew", certificate)
            if certificate["current_version_id"] is None:
                raise Conflict(
                    f"{certificate['name']!r} has no certificate yet; its agent is still enrolling it"
                )
            targets = await agents.targets_of_certificate(connection, certificate["id"])
            if target_ref is not None:
                wanted = await self._target(connection, target_ref)
                targets = [t for t in targets if t["id"] == wanted["id"]]
                if not targets:
                    raise NotFound(f"{certificate['name']!r} is not mapped to {wanted['name']!r}")
            if not targets:
                raise Conflict(f"{certificate['name']!r} is not mapped to any target")
            rows = [
                _deployment(
                    certificate_id=certificate["id"],
                    target=t,
                    version_id=certificate["current_version_id"],
                    reason=DeploymentReason.MANUAL,
                    now=now,
                )
                for t in targets
            ]
            await deployments.supersede_open(
                connection, certificate_id=certificate["id"], target_ids=[t["id"] for t in targets], now=now
            )
            await deployments.insert_deployments(connection, rows)
            await self._audit(
                connection,
                actor,
                "certificate.redeploy",
                certificate["id"],
                info,
                {"targets": [t["name"] for t in targets]},
            )
        return [public_deployment(r) for r in rows]

    async def history(self, *, certificate_ref: str, actor: Actor, limit: int = 100) -> list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            certificate = await self._certificate(connection, certificate_ref)
            require_on_certificate(actor, "cert.read", certificate)
            rows = await deployments.history(connection, certificate_id=certificate["id"], limit=limit)
        return [public_deployment(r) for r in rows]

    async def outcome_counts(self) -> list[tuple[str, str, int]]:
        async with read_only(self._ctx.engine) as connection:
            return await deployments.outcome_counts(connection)

    async def _open_for_targets(
        self,
        connection: Any,
        certificate: dict[str, Any],
        version_id: str | None,
        reason: DeploymentReason,
        now: datetime,
    ) -> int:
        targets = await agents.targets_of_certificate(connection, certificate["id"])
        if not targets:
            return 0
        await deployments.supersede_open(
            connection, certificate_id=certificate["id"], target_ids=[t["id"] for t in targets], now=now
        )
        await deployments.insert_deployments(
            connection,
            [
                _deployment(
                    certificate_id=certificate["id"], target=t, version_id=version_id, reason=reason, now=now
                )
                for t in targets
            ],
        )
        return len(targets)

    async def _certificate(self, connection: Any, ref: str) -> dict[str, Any]:
        row = await certificates.get(connection, ref) or await certificates.get_by_name(connection, ref)
        if row is None:
            raise NotFound(f"certificate {ref!r} does not exist")
        return row

    async def _target(self, connection: Any, ref: str) -> dict[str, Any]:
        row = await agents.get_target(connection, ref)
        if row is None:
            raise ValidationFailed(f"target {ref!r} does not exist")
        return row

    async def _audit(
        self,
        connection: Any,
        actor: Actor,
        action: str,
        certificate_id: str,
        info: RequestInfo | None,
        details: dict[str, Any],
    ) -> None:
        record = audit_record(
            actor=actor,
            action=action,
            resource_type="certificate",
            resource_id=certificate_id,
            at=self._ctx.clock.now(),
            request=info,
            details=details,
        )
        await audit.append(connection, [record])


def _single_agent(targets: list[dict[str, Any]]) -> str:
    holders = {str(t["agent_id"]) for t in targets}
    if len(holders) != 1:
        raise ValidationFailed("all targets of an agent-keyed certificate must be served by one agent")
    return holders.pop()


def _check_names(profile: Any, dns_names: tuple[str, ...], ips: tuple[str, ...]) -> None:
    problems: list[str] = []
    if ips and not profile.allow_ip_sans:
        problems.append(f"profile {profile.name!r} does not allow IP addresses")
    if profile.san_patterns:
        for name in dns_names:
            if not any(match_san_pattern(name, pattern) for pattern in profile.san_patterns):
                problems.append(f"name {name!r} matches none of the profile's SAN patterns")
    if problems:
        raise PolicyViolation("; ".join(problems), extra={"violations": problems})


def key_type_for(profile_row: dict[str, Any], version: dict[str, Any] | None) -> str:
    """What the agent generates: the previous key's type if the profile still allows it, else the
    profile's default."""
    profile = profile_from_row(profile_row)
    previous = key_type_of(version)
    if version is None or previous is None:
        return default_key_type(profile)
    if not profile_rules.key_violations(
        profile, algorithm=version["key_algorithm"], size=version["key_size"]
    ):
        return previous
    return default_key_type(profile)


__all__ = ["AgentKeyedRequest", "DeploymentService", "Held", "agent_actor", "key_type_for"]
