"""Read and curate the certificate inventory: list, detail, metadata edits, archive, versions, export."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from cryptography import x509

from certctl.domain.lifecycle import CertificateStatus
from certctl.errors import Conflict, NotFound, SealedSecretUnavailable, ValidationFailed
from certctl.keys.envelope import SealError
from certctl.pki.export import to_pkcs12
from certctl.pki.keys import PrivateKey, load_private_key_pem
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.services.issuance_store import public_version, version_key_aad
from certctl.services.visibility import require_on_certificate
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, certificates, rows
from certctl.store.repositories.certificates import CertificateQuery

EDITABLE = frozenset({"owner_id", "team_id", "tags", "environment", "auto_renew", "name"})


@dataclass(frozen=True)
class Export:
    content: bytes
    media_type: str
    filename: str


class InventoryService:
    def __init__(self, context: ServiceContext) -> None:
        self._ctx = context

    async def list(
        self, query: CertificateQuery, *, actor: Actor
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        """One page of what the actor may read (scoped grants filter the rows, not just single gets)."""
        scope = actor.access.scope_for("cert.read")
        if scope.nothing:
            return [], None
        async with read_only(self._ctx.engine) as connection:
            return await certificates.list_certificates(connection, replace(query, scope=scope))

    async def get(self, ref: str, *, actor: Actor) -> dict[str, Any]:
        async with read_only(self._ctx.engine) as connection:
            row = await _find(connection, ref, actor, "cert.read")
            version = None
            if row["current_version_id"]:
                version = await certificates.get_version(connection, row["current_version_id"])
        return row | {"current_version": public_version(version) if version else None}

    async def versions(self, ref: str, *, actor: Actor) -> builtins.list[dict[str, Any]]:
        async with read_only(self._ctx.engine) as connection:
            row = await _find(connection, ref, actor, "cert.read")
            return [public_version(v) for v in await certificates.versions_of(connection, row["id"])]

    async def overview(
        self, *, actor: Actor, weeks_ahead: int = 13
    ) -> tuple[dict[str, int], builtins.list[Any]]:
        """Counts by status and upcoming expiries of what the actor may read."""
        scope = actor.access.scope_for("cert.read")
        if scope.nothing:
            return {}, []
        now = self._ctx.clock.now()
        async with read_only(self._ctx.engine) as connection:
            by_status = await certificates.count_by_status(connection, scope)
            upcoming = await certificates.expiry_histogram(
                connection, now=now, until=now + timedelta(weeks=weeks_ahead), scope=scope
            )
        return by_status, upcoming

    async def update(
        self, *, ref: str, values: dict[str, Any], actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        unknown = set(values) - EDITABLE
        if unknown:
            raise ValidationFailed(f"fields {', '.join(sorted(unknown))} cannot be changed")
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await _find(uow.connection, ref, actor, "cert.edit")
            if row["status"] == CertificateStatus.ARCHIVED:
                raise Conflict(f"certificate {row['name']!r} is archived")
            await _check_references(uow.connection, values)
            renamed = "name" in values and values["name"] != row["name"]
            if renamed and await certificates.name_exists(uow.connection, values["name"]):
                raise Conflict(f"a certificate named {values['name']!r} already exists")
            changed = {k: v for k, v in values.items() if row.get(k) != v}
            if changed:
                await certificates.update_certificate(
                    uow.connection, row["id"], changed | {"updated_at": now}
                )
                await audit.append(
                    uow.connection,
                    [
                        audit_record(
                            actor=actor,
                            action="certificate.update",
                            resource_type="certificate",
                            resource_id=row["id"],
                            at=now,
                            request=request,
                            details={"fields": sorted(changed)},
                        )
                    ],
                )
        return row | changed

    async def archive(self, *, ref: str, actor: Actor, request: RequestInfo | None = None) -> dict[str, Any]:
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await _find(uow.connection, ref, actor, "cert.delete")
            if row["status"] == CertificateStatus.ARCHIVED:
                return row
            changes = {"status": str(CertificateStatus.ARCHIVED), "auto_renew": False, "updated_at": now}
            await certificates.update_certificate(uow.connection, row["id"], changes)
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=actor,
                        action="certificate.archive",
                        resource_type="certificate",
                        resource_id=row["id"],
                        at=now,
                        request=request,
                        details={"previous_status": row["status"]},
                    )
                ],
            )
        return row | changes

    async def export(
        self,
        *,
        ref: str,
        fmt: str,
        password: str | None,
        include_key: bool,
        actor: Actor,
        request: RequestInfo | None = None,
    ) -> Export:
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await _find(uow.connection, ref, actor, "cert.export" if include_key else "cert.read")
            if not row["current_version_id"]:
                raise Conflict(f"certificate {row['name']!r} has no issued version yet")
            version = await certificates.get_version(uow.connection, row["current_version_id"])
            assert version is not None
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=actor,
                        action="certificate.export",
                        resource_type="certificate",
                        resource_id=row["id"],
                        at=now,
                        request=request,
                        details={"format": fmt, "include_key": include_key, "serial": version["serial"]},
                    )
                ],
            )
        leaf = x509.load_pem_x509_certificate(version["cert_pem"].encode())
        chain = x509.load_pem_x509_certificates(version["chain_pem"].encode()) if version["chain_pem"] else []
        key: PrivateKey | None = None
        if include_key:
            if version["key_sealed"] is None:
                raise Conflict("this certificate's key was generated by its owner and is not held here")
            try:
                opened = self._ctx.master_key.open(version["key_sealed"], aad=version_key_aad(version["id"]))
            except SealError as exc:
                raise SealedSecretUnavailable(
                    "the stored key does not open with this server's master key"
                ) from exc
            key = load_private_key_pem(opened)
        safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in row["name"])
        if fmt == "pem":
            content = (version["cert_pem"] + version["chain_pem"]).encode()
            if key is not None:
                content = opened + content
            return Export(content, "application/pem-certificate-chain", f"{safe_name}.pem")
        if fmt == "pkcs12":
            if key is not None and not password:
                raise ValidationFailed("a password is required to export a private key in PKCS#12")
            data = to_pkcs12(
                key=key,
                cert=leaf,
                chain=chain,
                password=password.encode() if password else None,
                friendly_name=row["name"],
            )
            return Export(data, "application/pkcs12", f"{safe_name}.p12")
        raise ValidationFailed(f"unknown export format {fmt!r}; use pem or pkcs12")


async def _find(connection: Any, ref: str, actor: Actor, permission: str) -> dict[str, Any]:
    row = await certificates.get(connection, ref) or await certificates.get_by_name(connection, ref)
    if row is None:
        raise NotFound(f"certificate {ref!r} does not exist")
    require_on_certificate(actor, permission, row)
    return row


async def _check_references(connection: Any, values: dict[str, Any]) -> None:
    for column, table, kind in (("owner_id", rows.OWNERS, "owner"), ("team_id", rows.TEAMS, "team")):
        if values.get(column) is not None and await rows.get(connection, table, values[column]) is None:
            raise ValidationFailed(f"{kind} {values[column]!r} does not exist")
