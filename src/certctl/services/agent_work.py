"""What an agent does through the API: fetch its work, have a CSR certified, report an outcome, report
a target test. Every call names the agent; the API edge has already checked that the caller is it."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from certctl.domain.agents import (
    MAX_DEPLOYMENT_ATTEMPTS,
    REPORTABLE,
    WORK_BATCH,
    WORK_LEASE,
    DeploymentStatus,
)
from certctl.domain.lifecycle import CertificateStatus
from certctl.errors import Conflict, Forbidden, NotFound, ValidationFailed
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.services.deployments import agent_actor, key_type_for
from certctl.services.holds import Held
from certctl.services.issuance import IssuanceService
from certctl.services.lookups import RowCache
from certctl.services.targets import TargetService
from certctl.store.db import autocommit_reads, read_only, unit_of_work
from certctl.store.repositories import agents, audit, certificates, deployments

STEP_LIMIT = 50
MESSAGE_LIMIT = 2000


class AgentWorkService:
    def __init__(
        self,
        context: ServiceContext,
        *,
        issuance: IssuanceService,
        targets: TargetService,
        profiles: RowCache,
    ) -> None:
        self._ctx = context
        self._issuance = issuance
        self._targets = targets
        self._profiles = profiles

    async def work(self, *, agent_id: str) -> dict[str, Any]:
        """Claim this agent's open deployments under a lease and describe them: per certificate, either
        "enrol" (generate a key, send a CSR) or "deploy" (install this version), with each target's
        options (secrets included: this response goes to the serving agent only).

        Almost every poll finds nothing: one read (outside any transaction) says so, and only a poll
        that has something to hand out opens the write transaction that claims it."""
        now = self._ctx.clock.now()
        async with autocommit_reads(self._ctx.engine) as connection:
            if not await deployments.anything_for(connection, agent_id=agent_id, now=now):
                return {"items": [], "checks": []}
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            abandoned = await deployments.give_up_abandoned(
                connection, agent_id=agent_id, now=now, max_attempts=MAX_DEPLOYMENT_ATTEMPTS
            )
            for row in abandoned:
                await self._audit_outcome(connection, row, agent_id)
            claimed = await deployments.claim(
                connection, agent_id=agent_id, now=now, lease_until=now + WORK_LEASE, limit=WORK_BATCH
            )
            groups: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
            for row in claimed:
                certificate = await certificates.get(connection, row["certificate_id"])
                if certificate is None or certificate["status"] in (
                    CertificateStatus.ARCHIVED,
                    CertificateStatus.REVOKED,
                ):
                    await deployments.finish(
                        connection,
                        deployment_id=row["id"],
                        agent_id=agent_id,
                        values={
                            "status": DeploymentStatus.CANCELLED,
                            "message": "the certificate is no longer live",
                            "finished_at": now,
                            "updated_at": now,
                            "claimed_until": None,
                        },
                    )
                    continue
                if row["version_id"] is None and certificate["current_version_id"]:
                    current = await certificates.get_version(connection, certificate["current_version_id"])
                    if current is not None and current["created_at"] >= row["created_at"]:
                        await deployments.assign_version(
                            connection,
                            certificate_id=certificate["id"],
                            agent_id=agent_id,
                            version_id=current["id"],
                            now=now,
                        )
                        row["version_id"] = current["id"]
                groups[(certificate["id"], row["version_id"])].append(row | {"_certificate": certificate})
            items = [await self._item(connection, rows) for rows in groups.values()]
            checks = [
                {"target": self._target_view(target)}
                for target in await agents.list_targets(connection, agent_id=agent_id)
                if target["check_requested_at"] is not None
            ]
        return {"items": items, "checks": checks}

    async def submit_csr(
        self, *, agent: dict[str, Any], certificate_id: str, csr_pem: str, info: RequestInfo | None = None
    ) -> dict[str, Any]:
        """Certify a key the agent generated for a certificate it holds keys for, if it was asked to."""
        async with read_only(self._ctx.engine) as connection:
            certificate = await certificates.get(connection, certificate_id)
            if certificate is None:
                raise NotFound(f"certificate {certificate_id!r} does not exist")
            if certificate["key_agent_id"] != agent["id"]:
                raise Forbidden("this agent does not hold the keys of that certificate")
            asked = await deployments.open_key_requests(
                connection, certificate_id=certificate_id, agent_id=agent["id"]
            )
        if not asked:
            raise Conflict("no new key was requested for this certificate")
        issued = await self._issuance.renew(
            certificate_ref=certificate_id,
            csr_pem=csr_pem,
            actor=agent_actor(agent),
            info=info,
            expected_version_id=certificate["current_version_id"],
        )
        if isinstance(issued, Held):
            return {"status": "held", "approval_id": issued.approval["id"]}
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            await deployments.assign_version(
                uow.connection,
                certificate_id=certificate_id,
                agent_id=agent["id"],
                version_id=issued.version["id"],
                now=now,
            )
        return {"status": "issued", "version": _version_view(issued.version)}

    async def report(
        self,
        *,
        agent_id: str,
        deployment_id: str,
        outcome: str,
        message: str,
        steps: list[str],
        served_fingerprint: str | None,
    ) -> dict[str, Any]:
        status = REPORTABLE.get(outcome)
        if status is None:
            raise ValidationFailed(f"outcome must be one of: {', '.join(sorted(REPORTABLE))}")
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            row = await deployments.get(connection, deployment_id)
            if row is None or row["agent_id"] != agent_id:
                raise NotFound(f"deployment {deployment_id!r} is not this agent's")
            values = {
                "status": str(status),
                "message": message[:MESSAGE_LIMIT],
                "steps": [step[:500] for step in steps[:STEP_LIMIT]],
                "served_fingerprint": served_fingerprint,
                "finished_at": now,
                "updated_at": now,
                "claimed_until": None,
            }
            if not await deployments.finish(
                connection, deployment_id=deployment_id, agent_id=agent_id, values=values
            ):
                raise Conflict(f"deployment {deployment_id!r} is {row['status']} already")
            await self._audit_outcome(connection, row | values, agent_id)
        return row | values

    async def record_check(self, *, agent_id: str, target_id: str, ok: bool, message: str) -> None:
        await self._targets.record_check(agent_id=agent_id, target_id=target_id, ok=ok, message=message)

    async def _item(self, connection: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
        certificate = rows[0]["_certificate"]
        version_id = rows[0]["version_id"]
        item: dict[str, Any] = {
            "certificate_id": certificate["id"],
            "certificate_name": certificate["name"],
            "common_name": certificate["common_name"],
            "sans": certificate["sans"],
            "deployments": [],
        }
        if version_id is None:
            profile_row = await self._profiles.find(connection, certificate["profile_id"])
            current = None
            if certificate["current_version_id"]:
                current = await certificates.get_version(connection, certificate["current_version_id"])
            item |= {"action": "enrol", "key_type": key_type_for(profile_row, current), "version": None}
        else:
            version = await certificates.get_version(connection, version_id)
            item |= {"action": "deploy", "version": _version_view(version) if version else None}
        for row in rows:
            target = await agents.get_target(connection, row["target_id"])
            if target is not None:
                item["deployments"].append({"id": row["id"], "target": self._target_view(target)})
        return item

    def _target_view(self, target: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": target["id"],
            "name": target["name"],
            "type": target["type"],
            "options": self._targets.options_for_agent(target),
        }

    async def _audit_outcome(self, connection: Any, row: dict[str, Any], agent_id: str) -> None:
        target = await agents.get_target(connection, row["target_id"])
        certificate = await certificates.get(connection, row["certificate_id"])
        ok = row["status"] == DeploymentStatus.SUCCEEDED
        record = audit_record(
            actor=Actor(id=agent_id, name=f"agent:{agent_id}", type="agent"),
            action="deployment.succeeded" if ok else "deployment.failed",
            resource_type="certificate",
            resource_id=row["certificate_id"],
            at=self._ctx.clock.now(),
            details={
                "deployment": row["id"],
                "name": (certificate or {}).get("name", ""),
                "target": (target or {}).get("name", row["target_id"]),
                "outcome": str(row["status"]),
                "message": str(row.get("message") or "")[:500],
            },
            outcome="success" if ok else "failure",
        )
        await audit.append(connection, [record])


def _version_view(version: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": version["id"],
        "serial": version["serial"],
        "not_after": version["not_after"],
        "fingerprint_sha256": version["fingerprint_sha256"],
        "cert_pem": version["cert_pem"],
        "chain_pem": version["chain_pem"],
    }
