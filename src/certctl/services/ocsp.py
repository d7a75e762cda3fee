"""Answer OCSP requests (RFC 6960, profile of RFC 5019) from memory: pre-signed responses per (CA, serial).

The hot path is dictionary look-ups. Issuers are recognised by their name and key hashes (RFC 6960
§4.1.1) from a table rebuilt every few seconds; a response without a nonce is signed once and served
from a bounded LRU until halfway to its nextUpdate (RFC 5019 §2.2.4, §6), so caches and CDNs in front
see stable bytes. A revocation drops the CA's cached responses at once on this replica (the revocation
service calls :meth:`OcspService.invalidate`), and on other replicas within ``cache_ttl_seconds``: each
CA's revocation marker (its CRL number and stale mark, which every revocation changes) is re-read at
most that often. A request with a nonce (RFC 8954) is signed per request, since the nonce is signed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp

from certctl.errors import CertctlError
from certctl.keys.envelope import SealError
from certctl.pki.ocsp import (
    CertId,
    CertState,
    MalformedOcspRequest,
    SingleStatus,
    build_response,
    issuer_hashes,
    parse_request,
    unsuccessful,
    validity_window,
)
from certctl.services.ca_material import CaMaterialCache
from certctl.services.context import ServiceContext
from certctl.services.ocsp_signers import OcspSigners
from certctl.store.db import read_only
from certctl.store.repositories import ocsp as ocsp_store
from certctl.store.repositories import rows

log = logging.getLogger("certctl.ocsp")
RESPONSE_VALIDITY = timedelta(hours=1)
CACHE_SIZE = 50_000
_HASHES: tuple[hashes.HashAlgorithm, ...] = (
    hashes.SHA1(),  # noqa: S303 - CertIDs name issuers by SHA-1 hashes (RFC 5019 §2.1.1), not a signature
    hashes.SHA256(),
    hashes.SHA384(),
    hashes.SHA512(),
)
_IssuerKey = tuple[str, bytes, bytes]


@dataclass(frozen=True)
class OcspAnswer:
    """The DER to send; ``this_update``/``next_update`` are set when it may be cached by HTTP caches."""

    der: bytes
    this_update: datetime | None = None
    next_update: datetime | None = None
    etag: str = ""


@dataclass(frozen=True)
class _Cached:
    answer: OcspAnswer
    generation: int
    refresh_after: datetime


class OcspService:
    def __init__(
        self,
        context: ServiceContext,
        ca_cache: CaMaterialCache,
        *,
        sign_with_ca: bool = False,
        validity: timedelta = RESPONSE_VALIDITY,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._ctx = context
        self._cas = ca_cache
        self.signers = OcspSigners(context, ca_cache, sign_with_ca=sign_with_ca)
        self._validity = validity
        self._cache_size = cache_size
        self._responses: OrderedDict[tuple[str, int], _Cached] = OrderedDict()
        self._issuers: dict[_IssuerKey, str] = {}
        self._issuers_read = -1e9
        self._generations: dict[str, int] = {}
        self._markers: dict[str, tuple[float, object]] = {}

    def invalidate(self, ca_id: str) -> None:
        """Forget every cached response of the CA (called after a revocation commits)."""
        self._generations[ca_id] = self._generations.get(ca_id, 0) + 1
        self._markers.pop(ca_id, None)

    async def respond(self, der: bytes) -> OcspAnswer:
        """The OCSPResponse for one DER OCSPRequest; every failure is an OCSP error status, never raised."""
        try:
            parsed = parse_request(der)
        except MalformedOcspRequest as exc:
            log.debug("malformed OCSP request: %s", exc)
            return OcspAnswer(unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
        try:
            ca_ids = {await self._issuer_of(cert_id) for cert_id in parsed.cert_ids}
            if None in ca_ids or len(ca_ids) != 1:
                return OcspAnswer(unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED))
            ca_id = str(ca_ids.pop())
            await self._check_marker(ca_id)
            if parsed.nonce is None and len(parsed.cert_ids) == 1:
                return await self._cached(ca_id, parsed.cert_ids[0])
            return await self._sign(ca_id, list(parsed.cert_ids), parsed.nonce)
        except CertctlError as exc:
            log.warning("OCSP request not answered: %s", exc.message)
            return OcspAnswer(unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED))
        except SealError:
            log.error("the OCSP responder key of a CA does not open under this master key")
            return OcspAnswer(unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR))

    async def _cached(self, ca_id: str, cert_id: CertId) -> OcspAnswer:
        key = (ca_id, cert_id.serial_number)
        generation = self._generations.get(ca_id, 0)
        now = self._ctx.clock.now()
        cached = self._responses.get(key)
        if cached is not None and cached.generation == generation and now < cached.refresh_after:
            self._responses.move_to_end(key)
            return cached.answer
        answer = await self._sign(ca_id, [cert_id], None)
        assert answer.this_update is not None
        refresh_after = answer.this_update + self._validity / 2
        self._responses[key] = _Cached(answer, generation, refresh_after)
        self._responses.move_to_end(key)
        while len(self._responses) > self._cache_size:
            self._responses.popitem(last=False)
        return answer

    async def _sign(self, ca_id: str, cert_ids: list[CertId], nonce: bytes | None) -> OcspAnswer:
        statuses = [await self._status(ca_id, cert_id) for cert_id in cert_ids]
        signer = await self.signers.signer(ca_id)
        this_update, next_update = validity_window(self._ctx.clock.now(), self._validity)
        next_update = min(next_update, signer.certificate.not_valid_after_utc)
        der = build_response(
            statuses=statuses,
            signer=signer,
            this_update=this_update,
            next_update=next_update,
            nonce=nonce,
        )
        if nonce is not None:
            return OcspAnswer(der)
        return OcspAnswer(der, this_update, next_update, f'"{hashlib.sha256(der).hexdigest()[:32]}"')

    async def _status(self, ca_id: str, cert_id: CertId) -> SingleStatus:
        """good, revoked (time and reason, RFC 6960 §2.2) or unknown when this CA never issued the serial."""
        async with read_only(self._ctx.engine) as connection:
            found = await ocsp_store.version_status(
                connection, ca_id=ca_id, serial_hex=format(cert_id.serial_number, "x")
            )
        if found is None:
            return SingleStatus(cert_id, CertState.UNKNOWN)
        revoked_at, reason = found
        if revoked_at is None:
            return SingleStatus(cert_id, CertState.GOOD)
        try:
            flag = x509.ReasonFlags(reason) if reason else None
        except ValueError:
            flag = x509.ReasonFlags.unspecified
        return SingleStatus(cert_id, CertState.REVOKED, revoked_at.replace(microsecond=0), flag)

    async def _issuer_of(self, cert_id: CertId) -> str | None:
        key = (cert_id.hash_algorithm.name, cert_id.issuer_name_hash, cert_id.issuer_key_hash)
        found = self._issuers.get(key)
        if found is not None or time.monotonic() - self._issuers_read < self._ctx.cache_ttl_seconds:
            return found
        await self._read_issuers()
        return self._issuers.get(key)

    async def _read_issuers(self) -> None:
        """Every CA whose key this server holds, by its hashes under each algorithm a client may use."""
        async with read_only(self._ctx.engine) as connection:
            cas = await rows.list_all(connection, rows.CAS)
        table: dict[_IssuerKey, str] = {}
        for ca in cas:
            if ca["key_sealed"] is None:
                continue
            certificate = x509.load_pem_x509_certificate(ca["cert_pem"].encode())
            for algorithm in _HASHES:
                name_hash, key_hash = issuer_hashes(certificate, algorithm)
                table[(algorithm.name, name_hash, key_hash)] = str(ca["id"])
        self._issuers = table
        self._issuers_read = time.monotonic()

    async def _check_marker(self, ca_id: str) -> None:
        """Re-read the CA's revocation marker at most every ``cache_ttl_seconds``; a change (a revocation
        on another replica) drops the CA's cached responses."""
        seen = self._markers.get(ca_id)
        if seen is not None and time.monotonic() - seen[0] < self._ctx.cache_ttl_seconds:
            return
        async with read_only(self._ctx.engine) as connection:
            marker = await ocsp_store.revocation_marker(connection, ca_id)
        if seen is not None and seen[1] != marker:
            self.invalidate(ca_id)
        self._markers[ca_id] = (time.monotonic(), marker)
