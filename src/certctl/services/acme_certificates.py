"""Finalize (RFC 8555 §7.4), certificate download (§7.4.2) and revocation (§7.6) over the normal issuance
and revocation services: an ACME certificate is a managed certificate like any other (``source="acme"``,
named ``acme-<order id>``, ``auto_renew`` off because its client renews it), under the profile's rules,
policies and the CA's name constraints; revocation updates CRL and OCSP as any revocation does.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Update

from certctl.domain.rbac import global_access
from certctl.domain.revocation import RevocationReason
from certctl.errors import (
    BadCsr,
    CertctlError,
    Conflict,
    NameConstraintViolation,
    NotFound,
    PolicyViolation,
)
from certctl.pki.csr import ParsedCsr, parse_csr
from certctl.pki.errors import CsrError
from certctl.pki.export import fingerprint_sha256
from certctl.services.acme import AcmeProfile
from certctl.services.acme_errors import AcmeError, not_found
from certctl.services.audit import Actor
from certctl.services.ca_material import CaMaterialCache
from certctl.services.context import ServiceContext
from certctl.services.holds import Held
from certctl.services.issuance import IssuanceService, IssueRequest
from certctl.services.revocation import Revocation, RevocationService
from certctl.store.db import autocommit_reads, hot, one_statement
from certctl.store.repositories import acme, approvals, certificates

FINAL_APPROVAL_STATES = ("rejected", "expired", "failed")


def account_actor(account: dict[str, Any]) -> Actor:
    """ACME accounts act with the issuing rights of the ACME door itself: the JWS proved the key, the
    challenges proved the names, and the profile, policies and name constraints still apply."""
    return Actor(id=account["id"], name=f"acme:{account['id']}", type="acme", access=global_access(["admin"]))


def b64url_decode(value: Any, what: str, kind: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise AcmeError(kind, f"{what} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise AcmeError(kind, f"{what} is not valid base64url") from None


class AcmeCertificates:
    def __init__(
        self,
        context: ServiceContext,
        *,
        issuance: IssuanceService,
        revocation: RevocationService,
        ca_cache: CaMaterialCache,
    ) -> None:
        self._ctx = context
        self._issuance = issuance
        self._revocation = revocation
        self._cas = ca_cache

    async def claim(
        self, *, account: dict[str, Any], order_id: str
    ) -> tuple[dict[str, Any], list[str]] | None:
        """The account's ready order, now processing for this finalize, and its authorization ids; None
        when it is not one (the caller reads it to say why)."""
        async with hot(self._ctx.engine) as connection:
            return await acme.claim_for_finalize(
                connection, order_id=order_id, account_id=account["id"], now=self._ctx.clock.now()
            )

    async def release(self, order_id: str) -> None:
        """A claimed order goes back to ready (the finalize that claimed it was refused)."""
        await self._set(order_id, {"status": "ready"})

    async def finalize(
        self,
        *,
        account: dict[str, Any],
        order: dict[str, Any],
        profile: AcmeProfile,
        payload: dict[str, Any],
        claimed: bool = False,
    ) -> dict[str, Any]:
        """Issue the order's certificate from the CSR in ``payload``. ``claimed``: :meth:`claim` already
        made the order processing (it goes back to ready if the CSR is refused)."""
        if not claimed and order["status"] != "ready":
            raise AcmeError("orderNotReady", f"the order is {order['status']}, not ready")
        try:
            parsed = self._csr_for(order, payload)
        except AcmeError:
            if claimed:
                await self.release(order["id"])
            raise
        now = self._ctx.clock.now()
        if not claimed:
            async with hot(self._ctx.engine) as connection:
                if not await acme.start_finalize(connection, order["id"], now=now):
                    raise AcmeError("orderNotReady", "the order is being finalized already")
        request = IssueRequest(
            name=f"acme-{order['id']}",
            issuer=profile.issuer["id"],
            profile=profile.row["id"],
            csr_pem=parsed.csr.public_bytes(serialization.Encoding.PEM).decode(),
            sans=tuple(value for _, value in sorted((i["type"], i["value"]) for i in order["identifiers"])),
            auto_renew=False,
            source="acme",
            parsed_csr=parsed,
        )

        def issued(certificate_id: str, version_id: str) -> tuple[tuple[Update, dict[str, Any]], ...]:
            return acme.order_issued_linked(
                order["id"], certificate_id=certificate_id, version_id=version_id, now=self._ctx.clock.now()
            )

        try:  # the order becomes valid in the statement or transaction that stores its certificate
            outcome = await self._issuance.issue(request=request, actor=account_actor(account), linked=issued)
        except CertctlError as exc:
            await self._set(order["id"], {"status": "ready"})
            raise _acme_error(exc) from None
        if isinstance(outcome, Held):
            changes: dict[str, Any] = {"approval_id": outcome.approval["id"]}
            await self._set(order["id"], changes)
        else:
            changes = {
                "status": "valid",
                "certificate_id": outcome.certificate["id"],
                "version_id": outcome.version["id"],
            }
        return order | {"status": "processing"} | changes

    @staticmethod
    def _csr_for(order: dict[str, Any], payload: dict[str, Any]) -> ParsedCsr:
        """The payload's CSR, parsed and verified, naming exactly the order's identifiers (badCSR)."""
        der = b64url_decode(payload.get("csr"), "csr", "badCSR")
        try:
            parsed = parse_csr(der)
        except CsrError as exc:
            raise AcmeError("badCSR", exc.message) from None
        asked = {(i["type"], i["value"]) for i in order["identifiers"]}
        dns_names = set(parsed.dns_names)
        if parsed.common_name and not parsed.ip_addresses:
            dns_names.add(parsed.common_name.lower())
        in_csr = {("dns", n) for n in dns_names} | {("ip", a) for a in parsed.ip_addresses}
        if in_csr != asked:
            raise AcmeError("badCSR", "the names in the CSR differ from the order's identifiers")
        return parsed

    async def refresh(self, order: dict[str, Any]) -> dict[str, Any]:
        """An order held for approval: valid once the approved run issued its certificate, invalid when
        the approval was refused or lapsed."""
        if order["status"] != "processing" or order["approval_id"] is None:
            return order
        async with autocommit_reads(self._ctx.engine) as connection:
            issued = await certificates.get_by_name(connection, f"acme-{order['id']}")
            approval = await approvals.get(connection, order["approval_id"])
        changes: dict[str, Any] = {}
        if issued is not None and issued["current_version_id"]:
            changes = {
                "status": "valid",
                "certificate_id": issued["id"],
                "version_id": issued["current_version_id"],
            }
        elif approval is not None and approval["status"] in FINAL_APPROVAL_STATES:
            error = AcmeError("unauthorized", f"the issuance approval was {approval['status']}")
            changes = {"status": "invalid", "error": error.as_problem()}
        if changes:
            await self._set(order["id"], changes)
        return order | changes

    async def chain_pem(
        self, *, account: dict[str, Any], version_id: str, alternate: bool = False
    ) -> tuple[str, bool]:
        """RFC 8555 §7.4.2: leaf then chain, PEM (``application/pem-certificate-chain``), and whether the
        other chain exists. The default chain ends below the root (as TLS servers send it); the
        alternate one ends with the root itself, for software that wants the whole path (the same
        leaf either way). A certificate issued by a root has the one chain."""
        async with hot(self._ctx.engine) as connection:
            found = await acme.certificate_of_account(
                connection, version_id=version_id, account_id=account["id"]
            )
        if found is None:
            raise not_found("certificate")
        cert_pem, chain, ca_id = found
        root = await self._root_above(ca_id) if ca_id else None
        if alternate and root is None:
            raise not_found("alternate chain")
        pem = cert_pem.rstrip("\n") + "\n" + chain.lstrip("\n")
        if alternate and root is not None:
            pem = pem.rstrip("\n") + "\n" + root.lstrip("\n")
        return pem, root is not None

    async def _root_above(self, ca_id: str) -> str | None:
        """The PEM of the root above the CA, None when the CA is a root; from the CA material cache
        issuance keeps (the issuing CA is normally in it already)."""
        material = self._cas.peek(ca_id)
        if material is None:
            async with autocommit_reads(self._ctx.engine) as connection:
                try:
                    material = await self._cas.load(connection, ca_id)
                except NotFound:
                    return None
        if not material.chain:
            return None
        return material.root.public_bytes(serialization.Encoding.PEM).decode()

    async def revoke(self, *, account: dict[str, Any] | None, jwk_key: Any, payload: dict[str, Any]) -> None:
        """RFC 8555 §7.6: by the account that ordered the certificate (kid), or by the certificate's own
        key (jwk). Reasons are RFC 5280 §5.3.1 codes; hold and removeFromCRL are not offered."""
        der = b64url_decode(payload.get("certificate"), "certificate", "malformed")
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            raise AcmeError("malformed", "certificate is not a DER X.509 certificate") from None
        reason = _reason(payload.get("reason", 0))
        async with autocommit_reads(self._ctx.engine) as connection:
            version = await acme.version_by_fingerprint(connection, fingerprint_sha256(certificate))
            owner_order = None
            if version is not None and account is not None:
                owner_order = await acme.order_for_certificate(
                    connection, account_id=account["id"], certificate_id=version["certificate_id"]
                )
        if version is None:
            raise AcmeError("unauthorized", "this server did not issue that certificate")
        if account is not None and owner_order is None:
            raise AcmeError("unauthorized", "this account did not order that certificate")
        if account is None and _spki(jwk_key) != _spki(certificate.public_key()):
            raise AcmeError("unauthorized", "the JWS key is not the certificate's key")
        if version["revoked_at"] is not None:
            raise AcmeError("alreadyRevoked", "the certificate is already revoked")
        actor = (
            account_actor(account)
            if account
            else Actor(id="acme", name="acme:certificate-key", type="acme", access=global_access(["admin"]))
        )
        try:
            await self._revocation.revoke(
                ref=version["certificate_id"], revocation=Revocation(reason=reason), actor=actor
            )
        except Conflict as exc:
            raise AcmeError("alreadyRevoked", exc.message) from None

    async def _set(self, order_id: str, values: dict[str, Any]) -> None:
        async with one_statement(self._ctx.engine) as connection:
            await acme.update_order(connection, order_id, values | {"updated_at": self._ctx.clock.now()})


def _reason(value: Any) -> RevocationReason:
    if isinstance(value, bool) or not isinstance(value, int):
        raise AcmeError("badRevocationReason", "reason must be an RFC 5280 CRLReason code")
    try:
        reason = RevocationReason(value)
    except ValueError:
        raise AcmeError("badRevocationReason", f"{value} is not an RFC 5280 CRLReason code") from None
    if reason in (RevocationReason.CERTIFICATE_HOLD, RevocationReason.REMOVE_FROM_CRL):
        raise AcmeError("badRevocationReason", "revocation here is final: no certificateHold/removeFromCRL")
    return reason


def _spki(key: Any) -> bytes:
    return bytes(
        key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _acme_error(exc: CertctlError) -> AcmeError:
    """Refusals of the issuance service, as ACME problems (RFC 8555 §6.7)."""
    if isinstance(exc, NameConstraintViolation):
        return AcmeError("rejectedIdentifier", exc.message)
    if isinstance(exc, BadCsr | PolicyViolation):
        return AcmeError("badCSR", exc.message)
    if exc.status == 403:
        return AcmeError("unauthorized", exc.message)
    return AcmeError("badCSR" if exc.status == 422 else "serverInternal", exc.message)
