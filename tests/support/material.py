"""Certificate material for deployment tests: a throwaway CA and leaves signed by it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certctl.agent.deploy.base import Material


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class TestCa:
    """A root that signs leaves for loopback names; ``ca_file`` is its PEM for clients to trust."""

    __test__ = False

    directory: Path
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    serial: int = 1000

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Deploy Test Root")])
        now = datetime.now(UTC) - timedelta(minutes=5)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.directory / "deploy-test-root.pem"
        self.ca_file.write_text(_pem(self.cert))

    def material(self, *names: str, cn: str | None = None) -> Material:
        """A fresh key and leaf for ``names`` (DNS names, or IP addresses such as 127.0.0.1)."""
        import ipaddress

        self.serial += 1
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        sans_text = names or ("localhost",)
        for item in sans_text:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(item)))
            except ValueError:
                sans.append(x509.DNSName(item))
        now = datetime.now(UTC) - timedelta(minutes=5)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or sans_text[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(self.serial)
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        der = leaf.public_bytes(serialization.Encoding.DER)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return Material(
            certificate_pem=_pem(leaf),
            chain_pem=_pem(self.cert),
            private_key_pem=key_pem,
            fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        )
