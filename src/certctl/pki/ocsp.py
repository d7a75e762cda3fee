"""OCSP wire format (RFC 6960) over ``cryptography.x509.ocsp``, plus the little DER it does not cover.

``cryptography`` loads an OCSPRequest only when it holds exactly one Request, and its response builder
writes exactly one SingleResponse. RFC 6960 §4.1.1 allows a list of requests, so :func:`parse_request`
walks the outer TBSRequest with a small DER reader and hands each Request (with the request extensions)
back to ``cryptography`` as a one-request OCSPRequest. :func:`build_response` signs one response per
request with ``cryptography`` and, when there are several, splices their SingleResponses into one
ResponseData (§4.2.1) and signs that with the same key and algorithm.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl.pki.builder import new_serial
from certctl.pki.keys import PrivateKey, signature_hash_for

MAX_REQUESTS = 32
MAX_NONCE_OCTETS = 32
"""RFC 8954 §2.1: a responder rejects nonces longer than 32 octets with malformedRequest."""
_BASIC_RESPONSE_OID = bytes.fromhex("06092b0601050507300101")


class MalformedOcspRequest(ValueError):
    """The bytes are not an OCSPRequest this responder can answer (malformedRequest, RFC 6960 §4.2.1)."""


class CertState(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class CertId:
    """RFC 6960 §4.1.1 CertID: the issuer's name and key hashes under one algorithm, and the serial."""

    hash_algorithm: hashes.HashAlgorithm
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int


@dataclass(frozen=True)
class ParsedRequest:
    cert_ids: tuple[CertId, ...]
    nonce: bytes | None


@dataclass(frozen=True)
class SingleStatus:
    cert_id: CertId
    state: CertState
    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None


@dataclass(frozen=True)
class Signer:
    """The key that signs responses and its certificate: the CA itself or its delegated responder."""

    certificate: x509.Certificate
    key: PrivateKey
    delegated: bool


def _tlv(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the DER element at ``offset``; single-byte tags, definite lengths."""
    if offset + 2 > len(data):
        raise MalformedOcspRequest("truncated DER element")
    tag, first = data[offset], data[offset + 1]
    start = offset + 2
    if first & 0x80:
        count = first & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise MalformedOcspRequest("unsupported DER length")
        length = int.from_bytes(data[start : start + count], "big")
        start += count
    else:
        length = first
    end = start + length
    if end > len(data):
        raise MalformedOcspRequest("truncated DER element")
    return tag, start, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, content start, end) of each element between ``start`` and ``end``."""
    found = []
    offset = start
    while offset < end:
        tag, content, stop = _tlv(data, offset)
        if stop > end:
            raise MalformedOcspRequest("DER element overruns its parent")
        found.append((tag, offset, content, stop))
        offset = stop
    return found


def _encode(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    size = (length.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + length.to_bytes(size, "big") + content


def parse_request(der: bytes) -> ParsedRequest:
    """Split an OCSPRequest (RFC 6960 §4.1.1) into CertIDs and the nonce (RFC 8954); the optional
    signature is ignored (§4.1.2: responders need not verify it)."""
    tag, start, end = _tlv(der, 0)
    if tag != 0x30 or end != len(der):
        raise MalformedOcspRequest("an OCSPRequest is one DER SEQUENCE")
    outer = _children(der, start, end)
    if not outer or outer[0][0] != 0x30:
        raise MalformedOcspRequest("missing TBSRequest")
    _, _, tbs_start, tbs_end = outer[0]
    request_list: tuple[int, int] | None = None
    extensions = b""
    for tag, element, content, stop in _children(der, tbs_start, tbs_end):
        if tag == 0x30:
            request_list = (content, stop)
        elif tag == 0xA2:
            extensions = der[element:stop]
    if request_list is None:
        raise MalformedOcspRequest("missing requestList")
    requests = _children(der, *request_list)
    if not requests or len(requests) > MAX_REQUESTS:
        raise MalformedOcspRequest(f"requestList must hold 1 to {MAX_REQUESTS} requests")
    cert_ids = []
    nonce: bytes | None = None
    for index, (_, element, _, stop) in enumerate(requests):
        single_der = _encode(0x30, _encode(0x30, _encode(0x30, der[element:stop]) + extensions))
        try:
            single = ocsp.load_der_ocsp_request(single_der)
            cert_ids.append(
                CertId(
                    single.hash_algorithm,
                    single.issuer_name_hash,
                    single.issuer_key_hash,
                    single.serial_number,
                )
            )
            if index == 0:
                nonce = _nonce(single)
        except (ValueError, UnsupportedAlgorithm, x509.UnsupportedGeneralNameType) as exc:
            raise MalformedOcspRequest(f"request {index}: {exc}") from exc
    return ParsedRequest(tuple(cert_ids), nonce)


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        value = request.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None
    if not 1 <= len(value) <= MAX_NONCE_OCTETS:
        raise MalformedOcspRequest(f"the nonce must be 1 to {MAX_NONCE_OCTETS} octets (RFC 8954 §2.1)")
    return value


def issuer_hashes(ca_cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CA under ``algorithm`` (RFC 6960 §4.1.1): the hash of the
    DER subject and of the subjectPublicKey BIT STRING value."""
    name = hashes.Hash(algorithm)
    name.update(ca_cert.subject.public_bytes())
    spki = ca_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _, start, end = _tlv(spki, 0)
    bit_string = _children(spki, start, end)[1]
    key = hashes.Hash(algorithm)
    key.update(spki[bit_string[2] + 1 : bit_string[3]])
    return name.finalize(), key.finalize()


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """An OCSPResponse carrying only an error status (RFC 6960 §4.2.1)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


def build_responder_certificate(
    *,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    responder_key: PrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A delegated responder certificate (RFC 6960 §4.2.2.2): issued by the CA itself, EKU
    id-kp-OCSPSigning, and id-pkix-ocsp-nocheck (§4.2.2.2.1) so clients do not check its own status."""
    common_names = ca_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ca_name = str(common_names[0].value) if common_names else "CA"
    public_key = responder_key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{ca_name} OCSP Responder")]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(new_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    return builder.sign(ca_key, signature_hash_for(ca_key))


def build_response(
    *,
    statuses: list[SingleStatus],
    signer: Signer,
    this_update: datetime,
    next_update: datetime,
    nonce: bytes | None,
) -> bytes:
    """A successful, signed BasicOCSPResponse (RFC 6960 §4.2.1) answering every CertID in order; the
    responder is named by key hash (RFC 5019 §2.2.3), a delegated certificate travels in ``certs``."""
    singles = [_single(status, signer, this_update, next_update, nonce) for status in statuses]
    if len(singles) == 1:
        return singles[0]
    return _merge(singles, signer.key)


def _single(
    status: SingleStatus,
    signer: Signer,
    this_update: datetime,
    next_update: datetime,
    nonce: bytes | None,
) -> bytes:
    cert_status = {
        CertState.GOOD: ocsp.OCSPCertStatus.GOOD,
        CertState.REVOKED: ocsp.OCSPCertStatus.REVOKED,
        CertState.UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN,
    }[status.state]
    cert_id = status.cert_id
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=cert_id.issuer_name_hash,
            issuer_key_hash=cert_id.issuer_key_hash,
            serial_number=cert_id.serial_number,
            algorithm=cert_id.hash_algorithm,
            cert_status=cert_status,
            this_update=this_update,
            next_update=next_update,
            revocation_time=status.revoked_at,
            revocation_reason=status.reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer.certificate)
    )
    if signer.delegated:
        builder = builder.certificates([signer.certificate])
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(signer.key, signature_hash_for(signer.key))
    return response.public_bytes(serialization.Encoding.DER)


def _basic(response_der: bytes) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    """The BasicOCSPResponse DER inside an OCSPResponse, and its top-level elements."""
    _, start, end = _tlv(response_der, 0)
    _, _, bytes_start, _ = _children(response_der, start, end)[1]
    _, _, octets_start, octets_end = _children(response_der, *_tlv(response_der, bytes_start)[1:])[1]
    basic = response_der[octets_start:octets_end]
    _, basic_start, basic_end = _tlv(basic, 0)
    return basic, _children(basic, basic_start, basic_end)


def _responses_of(basic: bytes, elements: list[tuple[int, int, int, int]]) -> tuple[list[bytes], int]:
    """The SingleResponse elements of one ResponseData, and the index of their list within it."""
    _, _, tbs_start, tbs_end = elements[0]
    tbs = _children(basic, tbs_start, tbs_end)
    index = next(i for i, element in enumerate(tbs) if element[0] == 0x18) + 1
    _, _, list_start, list_end = tbs[index]
    return [basic[e[1] : e[3]] for e in _children(basic, list_start, list_end)], index


def _merge(singles: list[bytes], key: PrivateKey) -> bytes:
    """One response holding every SingleResponse of ``singles`` (all signed by ``key``), re-signed."""
    first, elements = _basic(singles[0])
    responses: list[bytes] = []
    for der in singles:
        basic, parts = _basic(der)
        responses.extend(_responses_of(basic, parts)[0])
    _, _, tbs_start, tbs_end = elements[0]
    tbs_parts = [first[e[1] : e[3]] for e in _children(first, tbs_start, tbs_end)]
    tbs_parts[_responses_of(first, elements)[1]] = _encode(0x30, b"".join(responses))
    tbs = _encode(0x30, b"".join(tbs_parts))
    signature = _sign(key, tbs)
    rest = [first[e[1] : e[3]] for e in elements[3:]]
    algorithm = first[elements[1][1] : elements[1][3]]
    basic = _encode(0x30, tbs + algorithm + _encode(0x03, b"\x00" + signature) + b"".join(rest))
    response_bytes = _encode(0x30, _BASIC_RESPONSE_OID + _encode(0x04, basic))
    return _encode(0x30, bytes.fromhex("0a0100") + _encode(0xA0, response_bytes))


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    algorithm = signature_hash_for(key)
    assert algorithm is not None
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    return key.sign(data, ec.ECDSA(algorithm))


def validity_window(now: datetime, lifetime: timedelta) -> tuple[datetime, datetime]:
    """(thisUpdate, nextUpdate) of a response produced at ``now`` (RFC 5019 §2.2.4), whole seconds."""
    this_update = now.replace(microsecond=0)
    return this_update, this_update + lifetime
