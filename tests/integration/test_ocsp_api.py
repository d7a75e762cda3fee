"""The OCSP responder through the HTTP routes, on both engines: statuses, signatures, several requests in
one, nonces, caching headers, invalidation on revocation, and bad input that must never be a 500."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from certctl.pki.ocsp import MAX_REQUESTS, CertId, _children, _encode, _tlv, parse_request
from support.apps import ApiHarness

OCSP_TYPE = {"Content-Type": "application/ocsp-request"}


def _issue(api: ApiHarness, name: str) -> x509.Certificate:
    body = {"name": name, "issuer": "local", "profile": "default", "common_name": name}
    assert api.post("/api/v1/certificates", json=body).status_code == 201
    exported = api.get(f"/api/v1/certificates/{name}/export")
    return x509.load_pem_x509_certificates(exported.content)[0]


def _issuing(api: ApiHarness) -> x509.Certificate:
    return x509.load_pem_x509_certificate(api.seeded["issuing"]["cert_pem"].encode())


def _request(leaf: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None = None) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _post(api: ApiHarness, der: bytes) -> Any:
    return api.client.post("/ocsp", content=der, headers=OCSP_TYPE)


def _check_signed(response: ocsp.OCSPResponse, issuer: x509.Certificate) -> x509.Certificate:
    """The response verifies under its delegated responder, which the issuing CA certified for OCSP."""
    assert response.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    responder = response.certificates[0]
    responder.verify_directly_issued_by(issuer)
    ekus = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.OCSP_SIGNING in ekus
    responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    public_key = responder.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    return responder


def test_good_revoked_unknown_and_invalidation(api: ApiHarness) -> None:
    issuer = _issuing(api)
    leaf = _issue(api, "ocsp-good.example.com")
    first = _post(api, _request(leaf, issuer))
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/ocsp-response"
    parsed = ocsp.load_der_ocsp_response(first.content)
    _check_signed(parsed, issuer)
    assert parsed.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert parsed.serial_number == leaf.serial_number
    assert parsed.next_update_utc is not None and parsed.this_update_utc is not None
    assert "public, max-age=" in first.headers["cache-control"]
    assert first.headers["etag"] and first.headers["last-modified"]
    again = _post(api, _request(leaf, issuer))
    assert again.content == first.content, "served from the pre-signed cache"
    encoded = base64.b64encode(_request(leaf, issuer)).decode()
    via_get = api.client.get(f"/ocsp/{encoded}")
    assert via_get.content == first.content
    not_modified = api.client.get(f"/ocsp/{encoded}", headers={"If-None-Match": first.headers["etag"]})
    assert not_modified.status_code == 304
    revoked = api.post("/api/v1/certificates/ocsp-good.example.com/revoke", json={"reason": "keyCompromise"})
    assert revoked.status_code == 200, revoked.text
    after = ocsp.load_der_ocsp_response(_post(api, _request(leaf, issuer)).content)
    assert after.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert after.revocation_reason == x509.ReasonFlags.key_compromise
    assert after.revocation_time_utc is not None
    unknown = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        after.issuer_name_hash,
        after.issuer_key_hash,
        0x1234567,
        hashes.SHA1(),
    )
    answer = ocsp.load_der_ocsp_response(
        _post(api, unknown.build().public_bytes(serialization.Encoding.DER)).content
    )
    assert answer.certificate_status == ocsp.OCSPCertStatus.UNKNOWN


def test_several_requests_in_one_and_nonce(api: ApiHarness) -> None:
    issuer = _issuing(api)
    good = _issue(api, "multi-a.example.com")
    revoked = _issue(api, "multi-b.example.com")
    api.post("/api/v1/certificates/multi-b.example.com/revoke", json={"reason": "superseded"})
    single_a, single_b = _request(good, issuer), _request(revoked, issuer)
    ids = [parse_request(single_a).cert_ids[0], parse_request(single_b).cert_ids[0]]
    nonce = bytes(range(16))
    der = _multi_request([single_a, single_b], nonce)
    response = ocsp.load_der_ocsp_response(_post(api, der).content)
    _check_signed(response, issuer)
    states = {single.serial_number: single.certificate_status for single in response.responses}
    assert states == {
        ids[0].serial_number: ocsp.OCSPCertStatus.GOOD,
        ids[1].serial_number: ocsp.OCSPCertStatus.REVOKED,
    }
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    with_nonce = _post(api, _request(good, issuer, nonce=b"n" * 32))
    assert with_nonce.headers["cache-control"] == "no-store"
    echoed = ocsp.load_der_ocsp_response(with_nonce.content)
    assert echoed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"n" * 32
    too_long = ocsp.load_der_ocsp_response(_post(api, _request(good, issuer, nonce=b"n" * 33)).content)
    assert too_long.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def _multi_request(singles: list[bytes], nonce: bytes) -> bytes:
    """One OCSPRequest holding the Request of each single-request DER, plus a nonce extension."""
    requests = b""
    for der in singles:
        _, start, end = _tlv(der, 0)
        _, _, tbs_start, tbs_end = _children(der, start, end)[0]
        _, _, list_start, list_end = _children(der, tbs_start, tbs_end)[0]
        requests += der[list_start:list_end]
    extension = x509.Extension(x509.OCSPNonce.oid, False, x509.OCSPNonce(nonce))
    nonce_ext = _encode(
        0x30, bytes.fromhex("06092b0601050507300102") + _encode(0x04, extension.value.public_bytes())
    )
    return _encode(0x30, _encode(0x30, _encode(0x30, requests) + _encode(0xA2, _encode(0x30, nonce_ext))))


def test_unknown_issuer_is_unauthorized(api: ApiHarness) -> None:
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        b"\x01" * 20,
        b"\x02" * 20,
        5,
        hashes.SHA1(),
    )
    response = _post(api, request.build().public_bytes(serialization.Encoding.DER))
    assert response.status_code == 200
    parsed = ocsp.load_der_ocsp_response(response.content)
    assert parsed.response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"\x30\x03\x02\x01",
        b"\x30\x82\xff\xff" + b"\x00" * 10,
        b"\x30\x00",
        b"\x30\x02\x30\x00",
    ],
)
def test_garbage_and_truncated_bodies_are_malformed_requests(api: ApiHarness, body: bytes) -> None:
    response = _post(api, body)
    assert response.status_code == 200
    parsed = ocsp.load_der_ocsp_response(response.content)
    assert parsed.response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert response.headers["cache-control"] == "no-store"


def test_truncated_real_request_and_bad_get(api: ApiHarness) -> None:
    der = _request(_issue(api, "trunc.example.com"), _issuing(api))
    for cut in (1, len(der) // 2, len(der) - 1):
        status = ocsp.load_der_ocsp_response(_post(api, der[:cut]).content).response_status
        assert status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    for path in ("/ocsp/!!!notbase64", "/ocsp/AAAA", "/ocsp/%2F%2F"):
        response = api.client.get(path)
        assert response.status_code == 200, path
        assert ocsp.load_der_ocsp_response(response.content).response_status == (
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST
        )


def test_too_many_requests_in_one_is_malformed(api: ApiHarness) -> None:
    der = _request(_issue(api, "many.example.com"), _issuing(api))
    multi = _multi_request([der] * (MAX_REQUESTS + 1), b"x" * 16)
    status = ocsp.load_der_ocsp_response(_post(api, multi).content).response_status
    assert status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_wrong_content_type_and_oversized_are_4xx(api: ApiHarness) -> None:
    wrong = api.client.post("/ocsp", content=b"\x30\x00", headers={"Content-Type": "application/json"})
    assert wrong.status_code == 415
    missing = api.client.post("/ocsp", content=b"\x30\x00")
    assert missing.status_code == 415
    oversized = api.client.post("/ocsp", content=b"\x30" * 70_000, headers=OCSP_TYPE)
    assert oversized.status_code == 413
    long_get = api.client.get("/ocsp/" + "A" * 60_000)
    assert long_get.status_code == 200
    assert ocsp.load_der_ocsp_response(long_get.content).response_status == (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )


def test_cert_id_shape() -> None:
    cert_id = CertId(hashes.SHA256(), b"a", b"b", 1)
    assert cert_id.serial_number == 1


def test_unsupported_hash_algorithm_is_malformed(api: ApiHarness) -> None:
    der = bytearray(_request(_issue(api, "md.example.com"), _issuing(api)))
    sha1_oid = bytes.fromhex("06052b0e03021a")
    at = der.find(sha1_oid)
    der[at : at + len(sha1_oid)] = bytes.fromhex("06052b0e030299")
    status = ocsp.load_der_ocsp_response(_post(api, bytes(der)).content).response_status
    assert status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
