"""Parsing and building PKCS#10 certificate signing requests (RFC 2986).

:func:`parse_csr` is the single entry point for untrusted CSR input: it bounds the
input size, accepts PEM (RFC 7468 §7) or DER, proves possession of the private key by
verifying the self-signature, and extracts the requested names from the subject and the
subjectAltName extension request (RFC 2985 §5.4.2, RFC 5280 §4.2.1.6) in canonical form.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import NameOID

from certctl.pki.errors import CsrError, KeyPolicyError
from certctl.pki.keys import (
    KeyInfo,
    PrivateKey,
    PublicKey,
    as_public_key,
    describe_public_key,
    signature_hash_for,
)

__all__ = ["MAX_CSR_BYTES", "ParsedCsr", "build_csr", "parse_csr"]

MAX_CSR_BYTES = 64 * 1024

# Errors cryptography raises for malformed or unsupported DER while (lazily) decoding a CSR.
_DECODE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


@dataclass(frozen=True)
class ParsedCsr:
    """A verified CSR and the names and key it asks for, normalised.

    DNS names are lower-case, IP addresses are in :mod:`ipaddress` canonical text, and
    email domains are lower-case; each tuple is de-duplicated in request order.
    """

    csr: x509.CertificateSigningRequest
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    emails: tuple[str, ...]
    key: KeyInfo
    public_key: PublicKey


def _load(data: bytes | str) -> x509.CertificateSigningRequest:
    if len(data) > MAX_CSR_BYTES:
        raise CsrError(f"CSR is larger than {MAX_CSR_BYTES // 1024} KiB")
    raw = data.encode("utf-8", errors="replace") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_CSR_BYTES:
        raise CsrError(f"CSR is larger than {MAX_CSR_BYTES // 1024} KiB")
    if not raw.strip():
        raise CsrError("CSR is empty")
    if b"-----BEGIN" in raw:
        if b"CERTIFICATE REQUEST-----" not in raw:
            raise CsrError("PEM data does not contain a CERTIFICATE REQUEST block")
        loader = x509.load_pem_x509_csr
    else:
        loader = x509.load_der_x509_csr
    try:
        return loader(raw)
    except _DECODE_ERRORS:
        raise CsrError("data is not a valid PEM or DER certificate signing request") from None


def _common_name(subject: x509.Name) -> str | None:
    attributes = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attributes:
        return None
    if len(attributes) > 1:
        raise CsrError("CSR subject contains more than one common name")
    value = attributes[0].value
    if not isinstance(value, str):
        raise CsrError("CSR common name is not a text string")
    if not value.strip():
        raise CsrError("CSR common name is empty")
    return value


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _requested_names(csr: x509.CertificateSigningRequest) -> tuple[list[str], list[str], list[str]]:
    """DNS, IP and email names from the subjectAltName extension request (RFC 5280 §4.2.1.6)."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], [], []
    dns: list[str] = []
    ips: list[str] = []
    emails: list[str] = []
    for name in san:
        if isinstance(name, x509.DNSName):
            if not name.value.strip():
                raise CsrError("CSR requests an empty DNS name")
            dns.append(name.value.strip().lower())
        elif isinstance(name, x509.IPAddress):
            if not isinstance(name.value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                raise CsrError("CSR requests an IP network instead of an IP address")
            ips.append(str(name.value))
        elif isinstance(name, x509.RFC822Name):
            local, at, domain = name.value.strip().rpartition("@")
            if not at or not local or not domain:
                raise CsrError(f"CSR requests a malformed email address {name.value!r}")
            emails.append(f"{local}@{domain.lower()}")
        else:
            raise CsrError(
                f"CSR requests an unsupported subject alternative name type: {type(name).__name__}"
            )
    return dns, ips, emails


def parse_csr(data: bytes | str) -> ParsedCsr:
    """Parse and verify an untrusted PEM or DER CSR (at most :data:`MAX_CSR_BYTES`).

    Raises :class:`CsrError` when the input is oversized or not a CSR, when its key type
    is unsupported, when its self-signature does not verify (RFC 2986 §3: proof of
    possession), or when the subject carries more than one common name.
    """
    csr = _load(data)
    try:
        public_key = as_public_key(csr.public_key())
        key_info = describe_public_key(public_key)
    except KeyPolicyError as exc:
        raise CsrError(f"CSR key is not acceptable: {exc.message}") from None
    except _DECODE_ERRORS:
        raise CsrError("CSR public key cannot be decoded") from None
    try:
        signature_ok = csr.is_signature_valid
    except _DECODE_ERRORS:
        raise CsrError("CSR signature algorithm is not supported") from None
    if not signature_ok:
        raise CsrError("CSR signature does not verify; the request was altered or not signed by its key")
    try:
        common_name = _common_name(csr.subject)
        dns, ips, emails = _requested_names(csr)
    except _DECODE_ERRORS:
        raise CsrError("CSR subject or extensions are malformed") from None
    return ParsedCsr(
        csr=csr,
        common_name=common_name,
        dns_names=_unique(dns),
        ip_addresses=_unique(ips),
        emails=_unique(emails),
        key=key_info,
        public_key=public_key,
    )


def build_csr(
    key: PrivateKey,
    *,
    common_name: str | None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    emails: Sequence[str] = (),
) -> x509.CertificateSigningRequest:
    """Build a CSR signed by ``key`` (SHA-256, or pure Ed25519) with the names requested as a SAN.

    The subjectAltName request is marked critical when there is no common name, as
    RFC 5280 §4.2.1.6 requires for certificates with an empty subject.
    """
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    for value in ip_addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(value)))
        except ValueError:
            raise CsrError(f"{value!r} is not a valid IP address") from None
    names.extend(x509.RFC822Name(value) for value in emails)
    if common_name is None and not names:
        raise CsrError("a CSR needs a common name or at least one subject alternative name")
    attributes = [] if common_name is None else [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=common_name is None)
    return builder.sign(key, signature_hash_for(key))
