"""OCSP service behaviour behind the routes, on both engines: responder rotation before expiry, keys sealed
at rest, signing with the CA key when pinned, and a revocation on another replica seen within the cache
TTL."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import select

from certctl.services.ca_material import CaMaterialCache
from certctl.services.context import ServiceContext
from certctl.services.ocsp import OcspService
from certctl.store.repositories.ocsp import RESPONDERS
from support.apps import ApiHarness


@dataclass
class MovableClock:
    at: datetime

    def now(self) -> datetime:
        return self.at


def _service(api: ApiHarness, clock: MovableClock, *, ttl: float, sign_with_ca: bool = False) -> OcspService:
    base = api.services.context
    context = ServiceContext(
        engine=base.engine,
        master_key=base.master_key,
        public_http_url=base.public_http_url,
        clock=clock,
        cache_ttl_seconds=ttl,
    )
    return OcspService(context, CaMaterialCache(base.master_key, ttl), sign_with_ca=sign_with_ca)


def _request_for(api: ApiHarness, name: str) -> bytes:
    body = {"name": name, "issuer": "local", "profile": "default", "common_name": name}
    assert api.post("/api/v1/certificates", json=body).status_code == 201
    leaf = x509.load_pem_x509_certificates(api.get(f"/api/v1/certificates/{name}/export").content)[0]
    issuer = x509.load_pem_x509_certificate(api.seeded["issuing"]["cert_pem"].encode())
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA256())
    return builder.build().public_bytes(serialization.Encoding.DER)


def _responder_serial(service: OcspService, api: ApiHarness, der: bytes) -> int:
    response = ocsp.load_der_ocsp_response(api.run(lambda: service.respond(der)).der)
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return response.certificates[0].serial_number


def test_responder_rotates_before_expiry_and_its_key_is_sealed(api: ApiHarness) -> None:
    clock = MovableClock(datetime.now(UTC))
    service = _service(api, clock, ttl=0.0)
    der = _request_for(api, "rotate.example.com")
    first = _responder_serial(service, api, der)
    clock.at += timedelta(days=19)
    assert _responder_serial(service, api, der) == first, "two thirds of its life remain"
    clock.at += timedelta(days=2)
    second = _responder_serial(service, api, der)
    assert second != first, "rotated once less than a third of 30 days remains"

    async def stored() -> list[dict[str, object]]:
        async with api.services.context.engine.connect() as connection:
            return [dict(row) for row in (await connection.execute(select(RESPONDERS))).mappings()]

    rows = api.run(stored)
    assert len(rows) == 2
    for row in rows:
        sealed = row["key_sealed"]
        assert isinstance(sealed, bytes) and b"PRIVATE KEY" not in sealed
        certificate = x509.load_pem_x509_certificate(str(row["cert_pem"]).encode())
        lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        assert lifetime <= timedelta(days=30, minutes=5)


def test_sign_with_ca_pins_the_ca_key(api: ApiHarness) -> None:
    service = _service(api, MovableClock(datetime.now(UTC)), ttl=0.0, sign_with_ca=True)
    der = _request_for(api, "pinned.example.com")
    response = ocsp.load_der_ocsp_response(api.run(lambda: service.respond(der)).der)
    issuer = x509.load_pem_x509_certificate(api.seeded["issuing"]["cert_pem"].encode())
    assert response.certificates == []
    assert (
        response.responder_key_hash
        == x509.SubjectKeyIdentifier.from_public_key(
            issuer.public_key()  # type: ignore[arg-type]
        ).digest
    )


def test_revocation_on_another_replica_shows_within_the_ttl(api: ApiHarness) -> None:
    replica = _service(api, MovableClock(datetime.now(UTC)), ttl=0.3)
    der = _request_for(api, "replica.example.com")
    before = ocsp.load_der_ocsp_response(api.run(lambda: replica.respond(der)).der)
    assert before.certificate_status == ocsp.OCSPCertStatus.GOOD
    revoked = api.post("/api/v1/certificates/replica.example.com/revoke", json={"reason": "superseded"})
    assert revoked.status_code == 200
    time.sleep(0.4)
    after = ocsp.load_der_ocsp_response(api.run(lambda: replica.respond(der)).der)
    assert after.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert after.revocation_reason == x509.ReasonFlags.superseded
