"""Who signs OCSP responses for a CA: a delegated responder certificate (RFC 6960 §4.2.2.2), or the CA.

Each CA gets its own responder key and certificate on first use: EKU id-kp-OCSPSigning, id-pkix-ocsp-nocheck
and a short validity (30 days), so a leaked responder key does not outlive a month and the CA key is
touched once a rotation, not per response. A new responder is made when less than a third of the current
one's life remains; responses signed by the previous one stay valid until their own nextUpdate. The key is
sealed at rest with the master key (AES-256-GCM, AAD bound to the responder id). With
``sign_with_ca`` the CA key signs directly (RFC 6960 §4.2.2.2, first case).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certctl.domain.ids import new_id
from certctl.errors import Conflict
from certctl.pki.keys import generate_private_key, load_private_key_pem, private_key_to_pem
from certctl.pki.ocsp import Signer, build_responder_certificate
from certctl.services.ca_material import CaMaterial, CaMaterialCache
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import ocsp as ocsp_store

log = logging.getLogger("certctl.ocsp")
RESPONDER_LIFETIME = timedelta(days=30)
CLOCK_SKEW = timedelta(minutes=5)


def responder_key_aad(responder_id: str) -> bytes:
    return f"ocsp-responder-key:{responder_id}".encode()


class OcspSigners:
    def __init__(
        self,
        context: ServiceContext,
        ca_cache: CaMaterialCache,
        *,
        sign_with_ca: bool,
        lifetime: timedelta = RESPONDER_LIFETIME,
    ) -> None:
        self._ctx = context
        self._cas = ca_cache
        self._sign_with_ca = sign_with_ca
        self._lifetime = lifetime
        self._signers: dict[str, tuple[float, datetime, Signer]] = {}

    async def signer(self, ca_id: str) -> Signer:
        """The current signer of the CA, from memory until its rotation time (re-read every few seconds so
        a responder rotated by another replica is picked up)."""
        now = self._ctx.clock.now()
        cached = self._signers.get(ca_id)
        if (
            cached is not None
            and now < cached[1]
            and time.monotonic() - cached[0] < self._ctx.cache_ttl_seconds
        ):
            return cached[2]
        async with read_only(self._ctx.engine) as connection:
            ca = await self._cas.load(connection, ca_id)
            if self._sign_with_ca:
                if ca.key is None:
                    raise Conflict(f"CA {ca.name!r} has no private key here; it cannot sign OCSP responses")
                signer = Signer(ca.certificate, ca.key, delegated=False)
                self._signers[ca_id] = (time.monotonic(), ca.certificate.not_valid_after_utc, signer)
                return signer
            row = await ocsp_store.latest_responder(connection, ca_id)
        if row is None or now >= self.rotate_at(row["not_before"], row["not_after"]):
            row = await self._issue(ca, now)
        certificate = x509.load_pem_x509_certificate(row["cert_pem"].encode())
        key_pem = self._ctx.master_key.open(row["key_sealed"], aad=responder_key_aad(row["id"]))
        signer = Signer(certificate, load_private_key_pem(key_pem), delegated=True)
        self._signers[ca_id] = (time.monotonic(), self.rotate_at(row["not_before"], row["not_after"]), signer)
        return signer

    def rotate_at(self, not_before: datetime, not_after: datetime) -> datetime:
        """When a responder is replaced: once less than a third of its life remains."""
        return not_after - (not_after - not_before) / 3

    async def _issue(self, ca: CaMaterial, now: datetime) -> dict[str, Any]:
        if ca.key is None:
            raise Conflict(f"CA {ca.name!r} has no private key here; it cannot certify an OCSP responder")
        key = generate_private_key("ecdsa-p256")
        not_before = (now - CLOCK_SKEW).replace(microsecond=0)
        not_after = min(now.replace(microsecond=0) + self._lifetime, ca.certificate.not_valid_after_utc)
        certificate = build_responder_certificate(
            ca_cert=ca.certificate,
            ca_key=ca.key,
            responder_key=key,
            not_before=not_before,
            not_after=not_after,
        )
        responder_id = new_id("ocsp_responder")
        row: dict[str, Any] = {
            "id": responder_id,
            "ca_id": ca.id,
            "cert_pem": certificate.public_bytes(Encoding.PEM).decode(),
            "key_sealed": self._ctx.master_key.seal(
                private_key_to_pem(key), aad=responder_key_aad(responder_id)
            ),
            "not_before": not_before,
            "not_after": not_after,
            "created_at": now,
        }
        async with unit_of_work(self._ctx.engine) as uow:
            await ocsp_store.add_responder(uow.connection, row)
        log.info("issued OCSP responder %s for CA %s, valid until %s", responder_id, ca.id, not_after)
        return row
