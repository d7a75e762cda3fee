"""The local CA hierarchy: roots, subordinates (any depth), imported enterprise CAs, drain and retire."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.ids import new_id
from certctl.domain.lifecycle import CaStatus
from certctl.errors import Conflict, NotFound, ValidationFailed
from certctl.pki.builder import Subject, build_self_signed_ca, build_subordinate_ca
from certctl.pki.errors import PkiError
from certctl.pki.export import cert_pem, fingerprint_sha256
from certctl.pki.keys import (
    describe_public_key,
    generate_private_key,
    load_private_key_pem,
    private_key_to_pem,
)
from certctl.pki.names import NameConstraints
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.ca_material import CaMaterialCache, ca_key_aad, require_issuing
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, rows


@dataclass(frozen=True)
class NewCa:
    name: str
    subject: Subject
    key_type: str = "ecdsa-p256"
    validity_days: int = 3650
    parent: str | None = None
    path_length: int | None = None
    name_constraints: NameConstraints = field(default_factory=NameConstraints)


def public_view(row: dict[str, Any]) -> dict[str, Any]:
    """A CA as the API shows it: never the sealed key."""
    return {k: v for k, v in row.items() if k != "key_sealed"} | {
        "has_key": row.get("key_sealed") is not None
    }


class CaService:
    def __init__(self, context: ServiceContext, cache: CaMaterialCache) -> None:
        self._ctx = context
        self._cache = cache

    async def create(
        self, *, spec: NewCa, actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        now = self._ctx.clock.now()
        ca_id = new_id("ca")
        try:
            key = generate_private_key(spec.key_type)
            not_before = now - timedelta(minutes=5)
            not_after = now + timedelta(days=spec.validity_days)
            constraints = spec.name_constraints if not spec.name_constraints.is_empty else None
            async with unit_of_work(self._ctx.engine) as uow:
                if await rows.get_by_name(uow.connection, rows.CAS, spec.name):
                    raise Conflict(f"a CA named {spec.name!r} already exists")
                if spec.parent is None:
                    certificate = build_self_signed_ca(
                        key=key,
                        subject=spec.subject,
                        not_before=not_before,
                        not_after=not_after,
                        path_length=spec.path_length,
                        name_constraints=constraints,
                    )
                    parent_id = None
                else:
                    parent = await self._cache.load(uow.connection, spec.parent)
                    parent_key = require_issuing(parent)
                    parent_id = parent.id
                    certificate = build_subordinate_ca(
                        issuer_cert=parent.certificate,
                        issuer_key=parent_key,
                        public_key=key.public_key(),
                        subject=spec.subject,
                        not_before=not_before,
                        not_after=min(not_after, parent.certificate.not_valid_after_utc),
                        path_length=spec.path_length,
                        name_constraints=constraints,
                        crl_url=f"{self._ctx.public_http_url}/crl/{parent.id}.crl",
                        ca_issuers_url=f"{self._ctx.public_http_url}/ca/{parent.id}.crt",
                    )
                values = self._row(
                    ca_id, spec.name, parent_id, certificate, private_key_to_pem(key), False, now
                )
                await rows.add(uow.connection, rows.CAS, values)
                await audit.append(
                    uow.connection,
                    [
                        audit_record(
                            actor=actor,
                            action="ca.create",
                            resource_type="ca",
                            resource_id=ca_id,
                            at=now,
                            request=request,
                            details={"name": spec.name, "parent": parent_id, "key_type": spec.key_type},
                        )
                    ],
                )
        except PkiError as exc:
            raise ValidationFailed(exc.message) from exc
        return public_view(values)

    async def import_ca(
        self,
        *,
        name: str,
        cert_pem_text: str,
        key_pem_text: str | None,
        parent: str | None,
        actor: Actor,
        request: RequestInfo | None = None,
    ) -> dict[str, Any]:
        """Sub-CA mode: chain under a CA issued elsewhere (e.g. an enterprise ADCS subordinate)."""
        now = self._ctx.clock.now()
        try:
            certificate = x509.load_pem_x509_certificate(cert_pem_text.encode())
        except ValueError as exc:
            raise ValidationFailed("the CA certificate is not a PEM X.509 certificate") from exc
        basic = _basic_constraints(certificate)
        if basic is None or not basic.ca:
            raise ValidationFailed(
                "the certificate is not a CA certificate (basicConstraints CA:TRUE missing)"
            )
        key_pem = None
        if key_pem_text:
            try:
                key = load_private_key_pem(key_pem_text.encode())
            except PkiError as exc:
                raise ValidationFailed(exc.message) from exc
            if key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ) != certificate.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ):
                raise ValidationFailed("the private key does not match the CA certificate")
            key_pem = private_key_to_pem(key)
        ca_id = new_id("ca")
        async with unit_of_work(self._ctx.engine) as uow:
            if await rows.get_by_name(uow.connection, rows.CAS, name):
                raise Conflict(f"a CA named {name!r} already exists")
            fingerprint = fingerprint_sha256(certificate)
            if await _by_fingerprint(uow.connection, fingerprint):
                raise Conflict("this CA certificate is already imported")
            parent_id = None
            if parent is not None:
                parent_row = await rows.find(uow.connection, rows.CAS, parent)
                if parent_row is None:
                    raise NotFound(f"parent CA {parent!r} does not exist")
                parent_cert = x509.load_pem_x509_certificate(parent_row["cert_pem"].encode())
                try:
                    certificate.verify_directly_issued_by(parent_cert)
                except (ValueError, TypeError) as exc:
                    raise ValidationFailed("the CA certificate was not issued by the given parent") from exc
                parent_id = parent_row["id"]
            values = self._row(ca_id, name, parent_id, certificate, key_pem, True, now)
            await rows.add(uow.connection, rows.CAS, values)
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=actor,
                        action="ca.import",
                        resource_type="ca",
                        resource_id=ca_id,
                        at=now,
                        request=request,
                        details={"name": name, "parent": parent_id, "with_key": key_pem is not None},
                    )
                ],
            )
        return public_view(values)

    async def set_status(
        self, *, ca_ref: str, status: CaStatus, actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        """Drain (stop issuing) then retire. Existing certificates stay valid either way."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await rows.find(uow.connection, rows.CAS, ca_ref)
            if row is None:
                raise NotFound(f"certificate authority {ca_ref!r} does not exist")
            current = CaStatus(row["status"])
            allowed_from = {
                CaStatus.ACTIVE: {CaStatus.DRAINING},
                CaStatus.DRAINING: {CaStatus.ACTIVE},
                CaStatus.RETIRED: {CaStatus.DRAINING},
            }[status]
            if current == status:
                return public_view(row)
            if current not in allowed_from:
                raise Conflict(f"CA {row['name']!r} is {current}; it cannot become {status} from there")
            await rows.change(uow.connection, rows.CAS, row["id"], {"status": str(status)})
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=actor,
                        action=f"ca.{'activate' if status == CaStatus.ACTIVE else status}",
                        resource_type="ca",
                        resource_id=row["id"],
                        at=now,
                        request=request,
                        details={"from": str(current), "to": str(status)},
                    )
                ],
            )
        self._cache.invalidate()
        return public_view(row | {"status": str(status)})

    async def list(self) -> list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            return [public_view(r) for r in await rows.list_all(connection, rows.CAS, order_by="created_at")]

    async def get(self, ca_ref: str) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            row = await rows.find(connection, rows.CAS, ca_ref)
        if row is None:
            raise NotFound(f"certificate authority {ca_ref!r} does not exist")
        return public_view(row)

    def _row(
        self,
        ca_id: str,
        name: str,
        parent_id: str | None,
        certificate: x509.Certificate,
        key_pem: bytes | None,
        imported: bool,
        now: Any,
    ) -> dict[str, Any]:
        basic = _basic_constraints(certificate)
        try:
            nc_ext = certificate.extensions.get_extension_for_class(x509.NameConstraints).value
            constraints = NameConstraints.from_extension(nc_ext).to_dict()
        except x509.ExtensionNotFound:
            constraints = {}
        return {
            "id": ca_id,
            "name": name,
            "parent_id": parent_id,
            "status": str(CaStatus.ACTIVE),
            "cert_pem": cert_pem(certificate),
            "key_sealed": self._ctx.master_key.seal(key_pem, aad=ca_key_aad(ca_id)) if key_pem else None,
            "subject": certificate.subject.rfc4514_string(),
            "key_algorithm": describe_public_key(certificate.public_key()).algorithm,
            "path_length": basic.path_length if basic else None,
            "name_constraints": constraints,
            "not_before": certificate.not_valid_before_utc,
            "not_after": certificate.not_valid_after_utc,
            "fingerprint_sha256": fingerprint_sha256(certificate),
            "imported": imported,
            "created_at": now,
        }


def _basic_constraints(certificate: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


async def _by_fingerprint(connection: AsyncConnection, fingerprint: str) -> bool:
    found = await connection.execute(
        select(rows.CAS.c.id).where(rows.CAS.c.fingerprint_sha256 == fingerprint).limit(1)
    )
    return found.first() is not None
