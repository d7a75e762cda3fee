"""Revoke managed certificates, one or many (RFC 5280 §5.3.1 reasons), and have their CAs publish CRLs.

A revocation marks the current version revoked, sets the certificate ``Revoked`` (it is never renewed
again), writes a ``certificate.revoke`` audit row and marks the issuing CA's CRL stale, all in one
transaction; a new CRL is signed right after the commit, and the periodic job retries any CA still
marked stale, so a crash between the two loses nothing.

Revoking a certificate that is already revoked is refused with 409 (the first reason and date stand).
Bulk revocation is idempotent instead: already revoked certificates are skipped and counted, so running
the same request again resumes where an interrupted run stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.lifecycle import CertificateStatus
from certctl.domain.revocation import RevocationReason
from certctl.errors import CertctlError, Conflict, NotFound, ValidationFailed
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.services.crls import CrlService
from certctl.services.visibility import require_on_certificate
from certctl.store.db import unit_of_work
from certctl.store.repositories import audit, certificates, revocations, rows
from certctl.store.repositories.certificates import CertificateQuery

log = logging.getLogger("certctl.revocation")
PAGE_SIZE = 500
REVOCABLE = tuple(s.value for s in CertificateStatus if s is not CertificateStatus.REVOKED)


@dataclass(frozen=True)
class Revocation:
    reason: RevocationReason
    invalidity_date: datetime | None = None
    """When the key is known or suspected to have been compromised (RFC 5280 §5.3.2)."""


@dataclass
class BulkOutcome:
    revoked: int = 0
    already_revoked: int = 0
    skipped: int = 0
    """Matched but not revocable here: never issued, or issued by a non-local issuer."""
    not_found: list[str] = field(default_factory=list)
    next_cursor: str | None = None
    ca_ids: set[str] = field(default_factory=set)


class RevocationService:
    def __init__(
        self, context: ServiceContext, crls: CrlService, on_revoked: Callable[[str], None] | None = None
    ) -> None:
        self._ctx = context
        self._crls = crls
        self._on_revoked = on_revoked
        """Told each CA id after its revocations commit (the OCSP cache drops that CA's responses)."""

    async def revoke(
        self, *, ref: str, revocation: Revocation, actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        """Revoke one certificate's current version; 409 when it is already revoked or not revocable."""
        now = self._check(revocation)
        async with unit_of_work(self._ctx.engine) as uow:
            row = await certificates.get(uow.connection, ref) or await certificates.get_by_name(
                uow.connection, ref
            )
            if row is None:
                raise NotFound(f"certificate {ref!r} does not exist")
            require_on_certificate(actor, "cert.revoke", row)
            outcome = await self._revoke_row(uow.connection, row, revocation, actor, request, now)
            if isinstance(outcome, CertctlError):
                raise outcome
        await self._publish({outcome})
        revoked = {
            "reason": revocation.reason.rfc_name,
            "revoked_at": now,
            "invalidity_date": revocation.invalidity_date,
        }
        return row | {
            "status": str(CertificateStatus.REVOKED),
            "auto_renew": False,
            "updated_at": now,
            "revocation": revoked,
        }

    async def revoke_many(
        self,
        *,
        refs: Sequence[str] = (),
        query: CertificateQuery | None = None,
        revocation: Revocation,
        actor: Actor,
        request: RequestInfo | None = None,
        limit: int | None = None,
    ) -> BulkOutcome:
        """Revoke the listed certificates, or those matching ``query`` that the actor may revoke, one page
        per transaction. ``limit`` stops after that many matches and returns a cursor to continue."""
        now = self._check(revocation)
        outcome = BulkOutcome()
        if query is not None:
            await self._revoke_matching(query, revocation, actor, request, now, outcome, limit)
        else:
            for start in range(0, len(refs), PAGE_SIZE):
                await self._revoke_refs(
                    refs[start : start + PAGE_SIZE], revocation, actor, request, now, outcome
                )
        await self._publish(outcome.ca_ids)
        return outcome

    def _check(self, revocation: Revocation) -> datetime:
        now = self._ctx.clock.now()
        if revocation.reason in (RevocationReason.CERTIFICATE_HOLD, RevocationReason.REMOVE_FROM_CRL):
            raise ValidationFailed(
                "revocation here is final: certificateHold and removeFromCRL are not offered"
            )
        if revocation.invalidity_date is not None and revocation.invalidity_date > now:
            raise ValidationFailed("invalidity_date cannot be in the future (RFC 5280 §5.3.2)")
        return now

    async def _revoke_matching(
        self,
        query: CertificateQuery,
        revocation: Revocation,
        actor: Actor,
        request: RequestInfo | None,
        now: datetime,
        outcome: BulkOutcome,
        limit: int | None,
    ) -> None:
        scope = actor.access.scope_for("cert.revoke")
        if scope.nothing:
            return
        page = replace(
            query, scope=scope, status=REVOCABLE, sort="created_at", descending=False, include_archived=True
        )
        remaining = limit
        while remaining is None or remaining > 0:
            size = PAGE_SIZE if remaining is None else min(PAGE_SIZE, remaining)
            async with unit_of_work(self._ctx.engine) as uow:
                found, cursor = await certificates.list_certificates(
                    uow.connection, replace(page, limit=size)
                )
                for row in found:
                    result = await self._revoke_row(uow.connection, row, revocation, actor, request, now)
                    _count(outcome, result)
            if remaining is not None:
                remaining -= len(found)
            if cursor is None:
                outcome.next_cursor = None
                return
            page = replace(page, cursor=cursor)
            outcome.next_cursor = cursor

    async def _revoke_refs(
        self,
        refs: Sequence[str],
        revocation: Revocation,
        actor: Actor,
        request: RequestInfo | None,
        now: datetime,
        outcome: BulkOutcome,
    ) -> None:
        async with unit_of_work(self._ctx.engine) as uow:
            for ref in refs:
                row = await certificates.get(uow.connection, ref) or await certificates.get_by_name(
                    uow.connection, ref
                )
                if row is None or not actor.access.allows(
                    "cert.revoke", profile_id=row["profile_id"], issuer_id=row["issuer_id"]
                ):
                    outcome.not_found.append(ref)
                    continue
                _count(outcome, await self._revoke_row(uow.connection, row, revocation, actor, request, now))

    async def _revoke_row(
        self,
        connection: AsyncConnection,
        row: dict[str, Any],
        revocation: Revocation,
        actor: Actor,
        request: RequestInfo | None,
        now: datetime,
    ) -> str | CertctlError:
        """The CA id whose CRL must change, or the reason this certificate was not revoked."""
        if not row["current_version_id"]:
            return Conflict(f"certificate {row['name']!r} has no issued version to revoke")
        version = await certificates.get_version(connection, row["current_version_id"])
        assert version is not None
        issuer = await rows.get(connection, rows.ISSUERS, row["issuer_id"])
        if version["issuer_ca_id"] is None or issuer is None or issuer["type"] != "local":
            kind = issuer["type"] if issuer else "unknown"
            return Conflict(f"certificates of issuer type {kind!r} cannot be revoked here yet; only 'local'")
        if version["revoked_at"] is not None:
            return _AlreadyRevoked(f"certificate {row['name']!r} is already revoked")
        reason = revocation.reason.rfc_name
        marked = await revocations.revoke_current_version(
            connection,
            certificate_id=row["id"],
            version_id=version["id"],
            at=now,
            reason=reason,
            invalidity_date=revocation.invalidity_date,
        )
        if not marked:
            return _AlreadyRevoked(f"certificate {row['name']!r} is already revoked")
        await revocations.mark_stale(connection, [version["issuer_ca_id"]], at=now)
        details: dict[str, Any] = {
            "reason": reason,
            "serial": version["serial"],
            "ca": version["issuer_ca_id"],
        }
        if revocation.invalidity_date is not None:
            details["invalidity_date"] = revocation.invalidity_date.isoformat()
        event = audit_record(
            actor=actor,
            action="certificate.revoke",
            resource_type="certificate",
            resource_id=row["id"],
            at=now,
            request=request,
            details=details,
        )
        await audit.append(connection, [event])
        return str(version["issuer_ca_id"])

    async def _publish(self, ca_ids: set[str]) -> None:
        """New CRLs now; a failure is logged and left to the periodic job (the CA stays marked stale)."""
        for ca_id in sorted(ca_ids):
            if self._on_revoked is not None:
                self._on_revoked(ca_id)
            try:
                await self._crls.regenerate(ca_id)
            except CertctlError as exc:
                log.warning(
                    "CRL for CA %s not regenerated now (the schedule retries): %s", ca_id, exc.message
                )


class _AlreadyRevoked(Conflict):
    pass


def _count(outcome: BulkOutcome, result: str | CertctlError) -> None:
    if isinstance(result, _AlreadyRevoked):
        outcome.already_revoked += 1
    elif isinstance(result, CertctlError):
        outcome.skipped += 1
    else:
        outcome.revoked += 1
        outcome.ca_ids.add(result)
