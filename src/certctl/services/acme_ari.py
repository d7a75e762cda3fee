"""ACME Renewal Information (RFC 9773): the suggested renewal window of a certificate, ``replaces`` in
newOrder, superseding the replaced certificate, and the per-issuer renew-by deadline of a mass
re-issuance.

A certificate is named by its certID (§4.1): base64url(AKI keyIdentifier) "." base64url(serial DER
content octets). Its window starts when its renewal falls due (the stored ``renewal_due_at``, else the
default policy: two thirds of the lifetime, with the per-certificate jitter) and ends a third of the way
from there to notAfter. A revoked certificate, or a version its certificate has moved past, gets a
window in the past (renew now). An issuer's renew-by deadline ends the window of every certificate
issued before the deadline was set by that time.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from certctl.domain.lifecycle import CertificateStatus
from certctl.domain.renewal import DEFAULT_POLICY, SuggestedWindow, renewal_due_at, unit_interval
from certctl.errors import NotFound
from certctl.services.acme_errors import AcmeError
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.services.visibility import require_on_catalog
from certctl.store.db import autocommit_reads, unit_of_work
from certctl.store.repositories import acme, acme_ari, audit, certificates, rows

RETRY_AFTER_SECONDS = 6 * 3600
"""How long clients wait before asking again (RFC 9773 §4.3 ``Retry-After``)."""
LIVE_STATUSES = (
    str(CertificateStatus.ACTIVE),
    str(CertificateStatus.EXPIRING),
    str(CertificateStatus.RENEWAL_IN_PROGRESS),
)
RENEW_NOW = timedelta(hours=1)


@dataclass(frozen=True)
class CertId:
    """A parsed RFC 9773 §4.1 certificate identifier."""

    key_identifier: bytes
    serial: int
    text: str


def _b64url(value: str) -> bytes:
    if not value or "=" in value:
        raise ValueError("empty or padded")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def parse_cert_id(value: Any) -> CertId:
    """The certID, or ``malformed`` (RFC 9773 §4.1: two unpadded base64url parts joined by a dot)."""
    if not isinstance(value, str) or value.count(".") != 1 or len(value) > 200:
        raise AcmeError("malformed", "a certificate identifier is base64url(AKI).base64url(serial)")
    aki_text, serial_text = value.split(".")
    try:
        key_identifier, serial_octets = _b64url(aki_text), _b64url(serial_text)
    except (binascii.Error, ValueError):
        raise AcmeError("malformed", "the certificate identifier is not base64url") from None
    serial = int.from_bytes(serial_octets, "big", signed=True)
    if serial <= 0:
        raise AcmeError("malformed", "the certificate identifier names no valid serial number")
    return CertId(key_identifier=key_identifier, serial=serial, text=value)


def cert_id_of(certificate: x509.Certificate) -> str:
    """The certID of a certificate (RFC 9773 §4.1); ValueError when it has no AKI keyIdentifier."""
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        raise ValueError("the certificate has no authority key identifier") from None
    if aki.key_identifier is None:
        raise ValueError("the certificate's authority key identifier has no keyIdentifier")
    serial = certificate.serial_number
    octets = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)
    encode = base64.urlsafe_b64encode
    return f"{encode(aki.key_identifier).decode().rstrip('=')}.{encode(octets).decode().rstrip('=')}"


def suggested_window(
    *, version: dict[str, Any], deadline: dict[str, Any] | None, now: datetime
) -> SuggestedWindow:
    """The window for one certificate version (see the module docstring); pure."""
    if version["revoked_at"] is not None or version["id"] != version["cert_current_version_id"]:
        return SuggestedWindow(start=now - 2 * RENEW_NOW, end=now - RENEW_NOW)
    not_before, not_after = version["not_before"], version["not_after"]
    due = version["cert_renewal_due_at"] or renewal_due_at(
        not_before=not_before,
        not_after=not_after,
        policy=DEFAULT_POLICY,
        certificate_id=version["certificate_id"],
    )
    start = min(max(due or not_before, not_before), not_after)
    end = start + (not_after - start) / 3
    if end <= start:
        end = not_after
    if deadline is not None and version["created_at"] < deadline["requested_at"]:
        end = min(end, deadline["renew_by"])
        start = min(start, deadline["requested_at"])
        if start >= end:
            start = end - RENEW_NOW
        return SuggestedWindow(start=start, end=end, explanation_url=deadline.get("explanation_url"))
    return SuggestedWindow(start=start, end=end)


def _certified(cert_pem: str) -> set[tuple[str, str]]:
    """The certificate's subject alternative names as (type, value)."""
    certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    dns = {("dns", name.lower()) for name in names.get_values_for_type(x509.DNSName)}
    return dns | {("ip", str(address)) for address in names.get_values_for_type(x509.IPAddress)}


class AcmeRenewalInfo:
    def __init__(self, context: ServiceContext) -> None:
        self._ctx = context

    async def _version(self, connection: Any, cert_id: CertId) -> dict[str, Any] | None:
        """The version this server issued with that serial under that authority key, if any."""
        for version in await acme_ari.versions_with_serial(connection, format(cert_id.serial, "x")):
            try:
                if cert_id_of(x509.load_pem_x509_certificate(version["cert_pem"].encode())) == cert_id.text:
                    return version
            except ValueError:
                continue
        return None

    async def window(self, *, cert_id: str) -> SuggestedWindow:
        """RFC 9773 §4.2; an unknown certificate is ``malformed`` with status 404."""
        parsed = parse_cert_id(cert_id)
        async with autocommit_reads(self._ctx.engine) as connection:
            version = await self._version(connection, parsed)
            if version is None:
                raise AcmeError(
                    "malformed", "this server issued no certificate with that identifier", status=404
                )
            deadline = await acme_ari.deadline_of(connection, version["cert_issuer_id"])
        return suggested_window(version=version, deadline=deadline, now=self._ctx.clock.now())

    async def check_replaces(
        self, *, account: dict[str, Any], cert_id: Any, identifiers: list[dict[str, str]]
    ) -> str:
        """RFC 9773 §5: ``replaces`` must name a certificate this account ordered, that shares at least
        one identifier with the new order (its normalised identifiers) and that no other order replaced
        already (``alreadyReplaced``, 409). Returns the certID to record."""
        parsed = parse_cert_id(cert_id)
        async with autocommit_reads(self._ctx.engine) as connection:
            version = await self._version(connection, parsed)
            if version is None:
                raise AcmeError("malformed", "replaces names a certificate this server did not issue")
            owner = await acme.order_for_certificate(
                connection, account_id=account["id"], certificate_id=version["certificate_id"]
            )
            if owner is None:
                raise AcmeError("unauthorized", "replaces names a certificate this account did not order")
            requested = {(i["type"], i["value"]) for i in identifiers}
            if not requested & _certified(version["cert_pem"]):
                raise AcmeError(
                    "malformed", "the order shares no identifier with the certificate it replaces"
                )
            replaced = await acme_ari.replacement_issued(connection, parsed.text)
        if replaced or version["cert_status"] == CertificateStatus.ARCHIVED:
            raise AcmeError("alreadyReplaced", "that certificate has been replaced already", status=409)
        return parsed.text

    async def supersede(self, *, order: dict[str, Any]) -> bool:
        """Once a replacing order is valid, the replaced certificate is archived in the inventory (its
        ``auto_renew`` off) with an audit row naming its successor. Idempotent; True when it archived."""
        if order["status"] != "valid" or not order.get("replaces"):
            return False
        parsed = parse_cert_id(order["replaces"])
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            version = await self._version(uow.connection, parsed)
            if version is None or version["cert_status"] == CertificateStatus.ARCHIVED:
                return False
            if version["certificate_id"] == order["certificate_id"]:
                return False
            changes = {"status": str(CertificateStatus.ARCHIVED), "auto_renew": False, "updated_at": now}
            await certificates.update_certificate(uow.connection, version["certificate_id"], changes)
            actor = Actor(id=order["account_id"], name=f"acme:{order['account_id']}", type="acme")
            record = audit_record(
                actor=actor,
                action="certificate.supersede",
                resource_type="certificate",
                resource_id=version["certificate_id"],
                at=now,
                details={
                    "previous_status": version["cert_status"],
                    "replaced_by": order["certificate_id"],
                    "acme_order": order["id"],
                },
            )
            await audit.append(uow.connection, [record])
        return True

    async def renew_by(
        self,
        *,
        issuer_ref: str,
        by: datetime,
        actor: Actor,
        request: RequestInfo | None = None,
        explanation_url: str | None = None,
    ) -> dict[str, Any]:
        """Mass re-issuance: every certificate of the issuer issued before now is asked (through ARI) to
        renew by ``by`` (with ``explanation_url`` as the window's ``explanationURL``, if given);
        auto-renewed ones have their own renewal brought forward, spread over the first half of the time
        left so the fleet does not renew in one minute."""
        if by.tzinfo is None:
            raise ValueError("renew-by needs an aware datetime")
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            issuer = await rows.find(uow.connection, rows.ISSUERS, issuer_ref)
            if issuer is None:
                raise NotFound(f"issuer {issuer_ref!r} does not exist")
            require_on_catalog(actor, "issuer.edit", kind="issuer", row=issuer)
            await acme_ari.put_deadline(
                uow.connection,
                {
                    "issuer_id": issuer["id"],
                    "renew_by": by,
                    "requested_at": now,
                    "requested_by": actor.name,
                    "explanation_url": explanation_url,
                },
            )
            rescheduled = 0
            for row in await acme_ari.renewals_after(
                uow.connection, issuer_id=issuer["id"], after=by, live_statuses=LIVE_STATUSES
            ):
                spread = max(by - now, timedelta(0)) / 2 * unit_interval(row["id"], "renew-by")
                await acme_ari.set_renewal_due(uow.connection, row["id"], now + spread)
                rescheduled += 1
            live = await acme_ari.count_live(
                uow.connection, issuer_id=issuer["id"], live_statuses=LIVE_STATUSES
            )
            summary = {
                "issuer": issuer["id"],
                "renew_by": by,
                "requested_at": now,
                "certificates": live,
                "rescheduled": rescheduled,
                "explanation_url": explanation_url,
            }
            record = audit_record(
                actor=actor,
                action="issuer.renew_by",
                resource_type="issuer",
                resource_id=issuer["id"],
                at=now,
                request=request,
                details={
                    "renew_by": by.isoformat(),
                    "certificates": live,
                    "rescheduled": rescheduled,
                    "explanation_url": explanation_url,
                },
            )
            await audit.append(uow.connection, [record])
        return summary
