"""Full and delta CRLs (RFC 5280 §5), built as DER directly and signed with the CA key.

``cryptography``'s ``CertificateRevocationListBuilder`` creates one Python object per entry and sorts and
re-encodes them; at a million entries that takes minutes. Here the revokedCertificates list is written
by a small DER encoder in one linear pass (each entry is SEQUENCE { userCertificate INTEGER,
revocationDate Time, crlEntryExtensions }), the TBSCertList around it is assembled from parts, and its
bytes are signed with the CA's private key. Extension *values* of the CRL itself (authority key
identifier, CRL number, issuing distribution point, ...) are encoded by ``cryptography``.

Pure functions: no I/O, time is passed in.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from certctl.pki.errors import PkiError
from certctl.pki.keys import PrivateKey

__all__ = ["CrlSpec", "RevokedEntry", "build_crl", "crl_pem", "encode_revoked_certificates"]

_UTC_TIME_LIMIT = 2050
"""RFC 5280 §5.1.2.4: dates through 2049 as UTCTime, from 2050 as GeneralizedTime."""


class RevokedEntry(NamedTuple):
    """One revoked certificate. ``reason`` is the RFC 5280 §5.3.1 code (None or 0: no extension)."""

    serial: int
    revoked_at: datetime
    reason: int | None = None
    invalidity_date: datetime | None = None


@dataclass(frozen=True)
class CrlSpec:
    """What goes around the entries. ``delta_of`` makes a delta CRL against that base number (§5.2.4)."""

    number: int
    this_update: datetime
    next_update: datetime
    distribution_point: str
    """The URL certificates carry as CRL distribution point; repeated as issuing distribution point."""
    delta_of: int | None = None
    freshest_url: str | None = None
    """Where the delta CRLs are (Freshest CRL, §5.2.6); set on full CRLs only."""


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _integer(value: int) -> bytes:
    if value < 0:
        raise PkiError("negative integers do not occur in CRLs")
    return _tlv(0x02, value.to_bytes((value.bit_length() + 8) // 8, "big"))


def _oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray((40 * arcs[0] + arcs[1],))
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None:
        raise PkiError("CRL times must be timezone-aware")
    return moment.astimezone(UTC)


def _time(moment: datetime) -> bytes:
    """Time (RFC 5280 §5.1.2.4): UTCTime before 2050, else GeneralizedTime; whole seconds, Zulu."""
    m = _utc(moment)
    if m.year < _UTC_TIME_LIMIT:
        fields = (m.year % 100, m.month, m.day, m.hour, m.minute, m.second)
        return b"\x17\x0d%02d%02d%02d%02d%02d%02dZ" % fields
    return _generalized_time(m)


def _generalized_time(moment: datetime) -> bytes:
    m = _utc(moment)
    return b"\x18\x0f%04d%02d%02d%02d%02d%02dZ" % (m.year, m.month, m.day, m.hour, m.minute, m.second)


def _extension(oid: str, value: bytes, *, critical: bool = False) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }."""
    return _tlv(0x30, _oid(oid) + (b"\x01\x01\xff" if critical else b"") + _tlv(0x04, value))


_REASON_CODE_OID = "2.5.29.21"
_INVALIDITY_DATE_OID = "2.5.29.24"
_REASON_EXTENSIONS = {
    code: _extension(_REASON_CODE_OID, bytes((0x0A, 1, code))) for code in range(11) if code != 7
}
"""reasonCode (§5.3.1), ENUMERATED, pre-encoded once per code (7 is unused by the RFC)."""
_REASON_SEQUENCES = {code: _tlv(0x30, extension) for code, extension in _REASON_EXTENSIONS.items()}
_INVALIDITY_PREFIX = b"\x30\x18" + _oid(_INVALIDITY_DATE_OID)
"""SEQUENCE of 24 octets: the 5-octet OID, then OCTET STRING { GeneralizedTime } of 2 + 17."""


def _invalidity_extension(moment: datetime) -> bytes:
    """invalidityDate (§5.3.2): always GeneralizedTime."""
    return _INVALIDITY_PREFIX + b"\x04\x11" + _generalized_time(moment)


def encode_revoked_certificates(entries: Iterable[RevokedEntry]) -> bytes:
    """The DER of the revokedCertificates SEQUENCE OF (§5.1.2.6) in one linear pass; b"" for no entries
    (the list MUST then be absent). Encoded times are memoised: revocations come in bursts."""
    out = bytearray()
    times: dict[datetime, bytes] = {}
    for serial, revoked_at, reason, invalidity_date in entries:
        if serial <= 0 or serial.bit_length() > 1000:
            raise PkiError(
                f"certificate serial numbers are positive and short (RFC 5280 §4.1.2.2), not {serial}"
            )
        if reason and reason not in _REASON_EXTENSIONS:
            raise PkiError(f"{reason} is not a CRLReason code (RFC 5280 §5.3.1)")
        serial_octets = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
        encoded_time = times.get(revoked_at)
        if encoded_time is None:
            encoded_time = times[revoked_at] = _time(revoked_at)
        if invalidity_date is not None:
            extensions = (_REASON_EXTENSIONS[reason] if reason else b"") + _invalidity_extension(
                invalidity_date
            )
            extensions = b"\x30" + _length(len(extensions)) + extensions
        else:
            extensions = _REASON_SEQUENCES[reason] if reason else b""
        size = 2 + len(serial_octets) + len(encoded_time) + len(extensions)
        fields = (len(serial_octets), serial_octets, encoded_time, extensions)
        if size < 0x80:
            out += b"\x30%c\x02%c%b%b%b" % (size, *fields)
        else:
            out += b"\x30" + _length(size) + b"\x02%c%b%b%b" % fields
    if not out:
        return b""
    return b"\x30" + _length(len(out)) + out


def _signature_algorithm(key: PrivateKey) -> tuple[bytes, hashes.HashAlgorithm | None]:
    """AlgorithmIdentifier DER and hash for the CA key (RFC 5758 §3.2, RFC 4055 §5, RFC 8410 §3)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name == ec.SECP384R1.name:
            return _tlv(0x30, _oid("1.2.840.10045.4.3.3")), hashes.SHA384()
        return _tlv(0x30, _oid("1.2.840.10045.4.3.2")), hashes.SHA256()
    if isinstance(key, rsa.RSAPrivateKey):
        return _tlv(0x30, _oid("1.2.840.113549.1.1.11") + b"\x05\x00"), hashes.SHA256()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _tlv(0x30, _oid("1.3.101.112")), None
    raise PkiError(f"cannot sign a CRL with a {type(key).__name__}")


def _sign(key: PrivateKey, data: bytes, digest: hashes.HashAlgorithm | None) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey) and digest is not None:
        return key.sign(data, ec.ECDSA(digest))
    if isinstance(key, rsa.RSAPrivateKey) and digest is not None:
        return key.sign(data, padding.PKCS1v15(), digest)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    raise PkiError(f"cannot sign a CRL with a {type(key).__name__}")


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """AKI (§5.2.1) from the CA's own subject key identifier, so it matches what leaves carry."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _point(url: str) -> x509.DistributionPoint:
    return x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None, crl_issuer=None
    )


def _crl_extensions(ca_cert: x509.Certificate, spec: CrlSpec) -> bytes:
    """AKI, CRL number (§5.2.3), issuing distribution point (§5.2.5, critical), then either the delta
    CRL indicator (§5.2.4, critical) or a Freshest CRL pointer (§5.2.6)."""
    idp = x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(spec.distribution_point)],
        relative_name=None,
        only_contains_user_certs=False,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    parts = [
        _extension("2.5.29.35", _authority_key_identifier(ca_cert).public_bytes()),
        _extension("2.5.29.20", x509.CRLNumber(spec.number).public_bytes()),
        _extension("2.5.29.28", idp.public_bytes(), critical=True),
    ]
    if spec.delta_of is not None:
        parts.append(
            _extension("2.5.29.27", x509.DeltaCRLIndicator(spec.delta_of).public_bytes(), critical=True)
        )
    elif spec.freshest_url:
        parts.append(_extension("2.5.29.46", x509.FreshestCRL([_point(spec.freshest_url)]).public_bytes()))
    return _tlv(0xA0, _tlv(0x30, b"".join(parts)))


def build_crl(
    *, ca_cert: x509.Certificate, ca_key: PrivateKey, spec: CrlSpec, entries: Iterable[RevokedEntry]
) -> bytes:
    """A signed CertificateList (RFC 5280 §5.1) in DER: v2, issuer = the CA's subject."""
    if spec.next_update <= spec.this_update:
        raise PkiError("a CRL's nextUpdate must follow its thisUpdate (RFC 5280 §5.1.2.5)")
    if spec.delta_of is not None and spec.delta_of >= spec.number:
        raise PkiError("a delta CRL's number must exceed its base CRL number (RFC 5280 §5.2.4)")
    algorithm, digest = _signature_algorithm(ca_key)
    revoked = encode_revoked_certificates(entries)
    head = (
        b"\x02\x01\x01"
        + algorithm
        + ca_cert.subject.public_bytes()
        + _time(spec.this_update)
        + _time(spec.next_update)
    )
    extensions = _crl_extensions(ca_cert, spec)
    tbs_length = len(head) + len(revoked) + len(extensions)
    tbs = b"".join((b"\x30", _length(tbs_length), head, revoked, extensions))
    signature = _tlv(0x03, b"\x00" + _sign(ca_key, tbs, digest))
    body_length = len(tbs) + len(algorithm) + len(signature)
    return b"".join((b"\x30", _length(body_length), tbs, algorithm, signature))


def crl_pem(der: bytes) -> str:
    """PEM ("X509 CRL" label, RFC 7468 §6) of a DER CRL."""
    text = base64.b64encode(der).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return "-----BEGIN X509 CRL-----\n" + "\n".join(lines) + "\n-----END X509 CRL-----\n"
