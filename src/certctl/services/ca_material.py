"""Loaded CA material (certificate, decrypted key, chain, inherited name constraints), cached in memory.

The issuance hot path must not decrypt a CA key or walk the hierarchy per request; the cache holds each
CA for a few seconds so a drain or retire on another replica takes effect within that window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.lifecycle import CaStatus
from certctl.errors import Conflict, NotFound, SealedSecretUnavailable
from certctl.keys.envelope import MasterKey, SealError
from certctl.pki.keys import PrivateKey, load_private_key_pem
from certctl.pki.names import NameConstraints
from certctl.store.repositories import rows


def ca_key_aad(ca_id: str) -> bytes:
    return f"ca-key:{ca_id}".encode()


@dataclass(frozen=True)
class CaMaterial:
    id: str
    name: str
    status: str
    certificate: x509.Certificate
    key: PrivateKey | None
    chain: tuple[x509.Certificate, ...]
    """Issuers above this CA, nearest first, ending with the root."""
    constraints: tuple[NameConstraints, ...]
    """Name constraints of this CA and every ancestor: a leaf must satisfy all of them."""
    chain_pem: str

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1] if self.chain else self.certificate


class CaMaterialCache:
    def __init__(self, master_key: MasterKey, ttl_seconds: float) -> None:
        self._master_key = master_key
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[float, CaMaterial]] = {}

    def invalidate(self, ca_id: str | None = None) -> None:
        if ca_id is None:
            self._entries.clear()
        else:
            self._entries.pop(ca_id, None)

    def peek(self, ca_ref: str) -> CaMaterial | None:
        cached = self._entries.get(ca_ref)
        if cached and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        return None

    async def load(self, connection: AsyncConnection, ca_ref: str) -> CaMaterial:
        cached = self.peek(ca_ref)
        if cached is not None:
            return cached
        material = await self._load_uncached(connection, ca_ref)
        now = time.monotonic()
        self._entries[material.id] = (now, material)
        self._entries[material.name] = (now, material)
        return material

    async def _load_uncached(self, connection: AsyncConnection, ca_ref: str) -> CaMaterial:
        row = await rows.find(connection, rows.CAS, ca_ref)
        if row is None:
            raise NotFound(f"certificate authority {ca_ref!r} does not exist")
        certificate = x509.load_pem_x509_certificate(row["cert_pem"].encode())
        key = None
        if row["key_sealed"] is not None:
            try:
                opened = self._master_key.open(row["key_sealed"], aad=ca_key_aad(row["id"]))
            except SealError as exc:
                raise SealedSecretUnavailable(
                    f"the key of CA {row['name']!r} does not open with this server's master key; "
                    "start the server with the master key the CA was created under"
                ) from exc
            key = load_private_key_pem(opened)
        chain: list[x509.Certificate] = []
        chain_rows: list[dict[str, Any]] = []
        constraints = [NameConstraints.from_dict(row["name_constraints"] or {})]
        parent_id = row["parent_id"]
        while parent_id is not None:
            parent = await rows.get(connection, rows.CAS, parent_id)
            if parent is None or len(chain) > 16:
                raise Conflict(f"the hierarchy above CA {row['name']!r} is broken")
            chain.append(x509.load_pem_x509_certificate(parent["cert_pem"].encode()))
            chain_rows.append(parent)
            constraints.append(NameConstraints.from_dict(parent["name_constraints"] or {}))
            parent_id = parent["parent_id"]
        pem = row["cert_pem"] + "".join(r["cert_pem"] for r in chain_rows if r["parent_id"] is not None)
        return CaMaterial(
            id=row["id"],
            name=row["name"],
            status=row["status"],
            certificate=certificate,
            key=key,
            chain=tuple(chain),
            constraints=tuple(c for c in constraints if not c.is_empty),
            chain_pem=pem,
        )


def require_issuing(material: CaMaterial) -> PrivateKey:
    if material.status != CaStatus.ACTIVE:
        raise Conflict(f"CA {material.name!r} is {material.status}: it issues no new certificates")
    if material.key is None:
        raise Conflict(f"CA {material.name!r} has no private key here; it cannot sign")
    return material.key
