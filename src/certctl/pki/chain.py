"""Certification path validation and ordering (RFC 5280 §6).

:func:`verify_chain` delegates the full RFC 5280 §6.1 path validation (signatures,
validity, basic constraints, path length, name constraints, key usage) to
``cryptography.x509.verification``, which applies the CA/Browser Forum Web PKI profile.
Consequences worth knowing: Ed25519 certificates are refused by that profile, and the
leading-dot DNS constraint form (``.example.com``) is treated as malformed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from certctl.pki.errors import ChainError, PkiError

__all__ = ["chain_pem", "order_chain", "verify_chain"]

_MAX_CHAIN_LENGTH = 16


def _verification_subject(name: str) -> x509.verification.Subject:
    """An IP literal is matched against iPAddress SANs, anything else against dNSName SANs (RFC 6125)."""
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name.strip().lower())


def verify_chain(
    *,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    root: x509.Certificate,
    at: datetime,
    dns_name: str | None,
) -> None:
    """Validate the path leaf -> intermediates -> root at time ``at`` (RFC 5280 §6.1).

    With ``dns_name`` (a host name or IP literal) the leaf must be a TLS server
    certificate for that name (serverAuth EKU); without it the path is validated as for a
    client certificate but without requiring a particular EKU.  Raises
    :class:`ChainError` with the validator's reason when the path does not validate.
    """
    if at.utcoffset() is None:
        raise PkiError("validation time must be timezone-aware (UTC)")
    builder = PolicyBuilder().store(Store([root])).time(at)
    try:
        if dns_name:
            verifier = builder.build_server_verifier(_verification_subject(dns_name))
            verifier.verify(leaf, list(intermediates))
        else:
            any_eku = ExtensionPolicy.webpki_defaults_ee().may_be_present(
                x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None
            )
            builder = builder.extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=any_eku
            )
            builder.build_client_verifier().verify(leaf, list(intermediates))
    except VerificationError as exc:
        reason = str(exc).removeprefix("validation failed: ")
        raise ChainError(f"certificate chain does not verify: {reason}") from None


def _issued_by(child: x509.Certificate, candidate: x509.Certificate) -> bool:
    """Whether ``candidate``'s subject and key issued ``child`` (RFC 5280 §6.1.3 (a)(1), (a)(4))."""
    if child.issuer != candidate.subject:
        return False
    try:
        child.verify_directly_issued_by(candidate)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _self_signed(cert: x509.Certificate) -> bool:
    return _issued_by(cert, cert)


def order_chain(leaf: x509.Certificate, pool: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """The leaf followed by its issuers found in ``pool``, stopping before a self-signed root.

    Each link is checked by name and signature, so unrelated or look-alike certificates
    in the pool are ignored.  The chain ends early when no issuer is found; it is the
    form TLS servers send (RFC 8446 §4.4.2).
    """
    chain = [leaf]
    remaining = list(pool)
    current = leaf
    while len(chain) < _MAX_CHAIN_LENGTH and not _self_signed(current):
        issuer = next((cert for cert in remaining if _issued_by(current, cert)), None)
        if issuer is None or _self_signed(issuer):
            break
        chain.append(issuer)
        remaining = [cert for cert in remaining if cert != issuer]
        current = issuer
    return chain


def chain_pem(certs: Iterable[x509.Certificate]) -> str:
    """Concatenated PEM blocks (RFC 7468 §5), in the order given."""
    return "".join(cert.public_bytes(serialization.Encoding.PEM).decode("ascii") for cert in certs)
