"""Certificate and key export formats: PEM, SHA-256 fingerprints and PKCS#12 (RFC 7292).

Password-protected PKCS#12 files use PBES2 with PBKDF2 and AES-256-CBC for both the key
and certificate bags and an HMAC-SHA-256 integrity MAC (RFC 8018, RFC 9579), instead of
the legacy RC2/3DES + SHA-1 defaults that older tools still emit.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certctl.pki.errors import PkiError
from certctl.pki.keys import PrivateKey

__all__ = ["PKCS12_KDF_ROUNDS", "cert_pem", "fingerprint_sha256", "to_pkcs12"]

PKCS12_KDF_ROUNDS = 100_000


def to_pkcs12(
    *,
    key: PrivateKey | None,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    password: bytes | None,
    friendly_name: str,
) -> bytes:
    """A PKCS#12 bundle (RFC 7292) with the key, certificate and CA chain.

    ``password=None`` writes an unencrypted file; an empty password is refused because
    tools disagree on what it means.  The key must belong to ``cert``.
    """
    if key is not None and key.public_key() != cert.public_key():
        raise PkiError("private key does not match the certificate")
    encryption: serialization.KeySerializationEncryption
    if password is None:
        encryption = serialization.NoEncryption()
    elif not password:
        raise PkiError("PKCS#12 password must not be empty; pass no password for an unencrypted file")
    else:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(PKCS12_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(password)
        )
    return pkcs12.serialize_key_and_certificates(
        name=friendly_name.encode("utf-8") if friendly_name else None,
        key=key,
        cert=cert,
        cas=list(chain) or None,
        encryption_algorithm=encryption,
    )


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 over the DER certificate, lower-case hex without separators."""
    return cert.fingerprint(hashes.SHA256()).hex()


def cert_pem(cert: x509.Certificate) -> str:
    """The certificate as a PEM block (RFC 7468 §5)."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
