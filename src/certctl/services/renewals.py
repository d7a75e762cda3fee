"""Automatic renewal: turn due certificates into renewal jobs, and carry one renewal job out.

Enqueueing is idempotent by the job's dedup key (one job per certificate version), and running is
idempotent by a version check plus a compare-and-swap on the current version: a job run twice, or
racing a manual renewal, renews the certificate at most once and reports the other run as superseded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certctl.domain.jobs import JobType, renewal_dedup_key
from certctl.domain.lifecycle import CertificateStatus, status_for_validity
from certctl.errors import Conflict
from certctl.services.audit import SYSTEM
from certctl.services.context import ServiceContext
from certctl.services.holds import Held
from certctl.services.issuance import IssuanceService
from certctl.services.jobs import new_job
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import certificates, jobs, renewals

DEFAULT_MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class ScanPage:
    seen: int
    created: int
    next_after: tuple[datetime, str] | None
    """Keyset position after the last row read; None when the page was the last one."""


class RenewalService:
    def __init__(
        self,
        context: ServiceContext,
        issuance: IssuanceService,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        request_agent_keys: Callable[[str], Awaitable[int]] | None = None,
    ) -> None:
        self._ctx = context
        self._issuance = issuance
        self.max_attempts = max_attempts
        self._request_agent_keys = request_agent_keys
        """Renewal of an agent-keyed certificate: ask its agent for a new key instead of signing here."""

    async def enqueue_due_page(
        self, *, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> ScanPage:
        """One page of due certificates → renewal jobs (skipping versions that have one already) and
        RenewalInProgress for the certificates that got a job, in one transaction."""
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            due = await renewals.due_for_renewal(connection, now=now, after=after, limit=limit)
            records = [
                new_job(
                    type=JobType.RENEWAL,
                    dedup_key=renewal_dedup_key(row["id"], row["current_version_id"]),
                    now=now,
                    max_attempts=self.max_attempts,
                    certificate_id=row["id"],
                    version_id=row["current_version_id"],
                    payload={"renewal_due_at": row["renewal_due_at"].isoformat()},
                )
                for row in due
            ]
            inserted = await jobs.enqueue(connection, records)
            started = [r["certificate_id"] for r in records if r["id"] in inserted]
            await renewals.mark_in_progress(connection, ids=started, now=now)
        next_after = (due[-1]["renewal_due_at"], due[-1]["id"]) if len(due) == limit else None
        return ScanPage(seen=len(due), created=len(inserted), next_after=next_after)

    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Renew the job's certificate version once. A version that moved on (renewed by hand, by an
        earlier run of this job) or a certificate gone, revoked or no longer auto-renewed is a success
        with nothing done: the job's purpose is already met or withdrawn."""
        certificate_id, version_id = job["certificate_id"], job["version_id"]
        async with read_only(self._ctx.engine) as connection:
            current = await certificates.get(connection, certificate_id)
        if current is None:
            return {"outcome": "gone"}
        if current["current_version_id"] != version_id:
            return {"outcome": "superseded", "current_version_id": current["current_version_id"]}
        if current["status"] in (CertificateStatus.REVOKED, CertificateStatus.ARCHIVED):
            return {"outcome": "skipped", "reason": f"certificate is {current['status']}"}
        if not current["auto_renew"]:
            await self._stand_down(current)
            return {"outcome": "skipped", "reason": "auto-renew is off"}
        if current.get("key_agent_id") and self._request_agent_keys is not None:
            opened = await self._request_agent_keys(certificate_id)
            return {"outcome": "key_requested", "agent_id": current["key_agent_id"], "targets": opened}
        try:
            renewed = await self._issuance.renew(
                certificate_ref=certificate_id, csr_pem=None, actor=SYSTEM, expected_version_id=version_id
            )
        except Conflict:
            async with read_only(self._ctx.engine) as connection:
                now_current = await certificates.get(connection, certificate_id)
            if now_current is not None and now_current["current_version_id"] != version_id:
                return {"outcome": "superseded", "current_version_id": now_current["current_version_id"]}
            raise
        if isinstance(renewed, Held):
            return {"outcome": "held", "approval_id": renewed.approval["id"]}
        return {
            "outcome": "renewed",
            "version_id": renewed.version["id"],
            "not_after": renewed.version["not_after"].isoformat(),
        }

    async def _stand_down(self, current: dict[str, Any]) -> None:
        now = self._ctx.clock.now()
        status = status_for_validity(
            not_after=current["not_after"],
            now=now,
            expiring_within=self._ctx.expiring_within,
            renewal_due_at=current.get("renewal_due_at"),
        )
        async with unit_of_work(self._ctx.engine) as uow:
            await renewals.stand_down(
                uow.connection,
                certificate_id=current["id"],
                version_id=current["current_version_id"],
                status=str(status),
                now=now,
            )
