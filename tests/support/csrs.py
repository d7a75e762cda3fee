"""Test helpers that build CSRs and count rows (to prove that bad input wrote nothing)."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from certctl.store.models import AuditEvent, CertificateVersion, ManagedCertificate


def csr_pem(*names: str, key: Any = None, cn: str | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or names[0])])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    algorithm = None if key.__class__.__name__.startswith("Ed") else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def dsa_csr(name: str) -> str:
    return csr_pem(name, key=dsa.generate_private_key(2048))


def tampered_csr(name: str) -> str:
    csr = x509.load_pem_x509_csr(csr_pem(name).encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01
    import base64

    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


async def counts(engine: Any) -> tuple[int, int, int]:
    async with engine.connect() as connection:
        certs = (await connection.execute(select(func.count()).select_from(ManagedCertificate))).scalar_one()
        versions = (
            await connection.execute(select(func.count()).select_from(CertificateVersion))
        ).scalar_one()
        events = (
            await connection.execute(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action.not_like("auth.%"))
            )
        ).scalar_one()
    return int(certs), int(versions), int(events)
