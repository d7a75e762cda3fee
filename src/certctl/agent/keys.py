"""Private keys on the agent's host. A key is generated for a certificate before its CSR is sent, kept as
``pending-<certificate id>.key`` until the certificate comes back, then filed under the SHA-256 of its
public key, so any version of any certificate finds its key by the certificate's own public key."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl.agent.state import write_private
from certctl.pki.csr import build_csr
from certctl.pki.keys import PrivateKey, generate_private_key, load_private_key_pem, private_key_to_pem


def spki_sha256(public_key: object) -> str:
    der = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


class KeyStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _pending(self, certificate_id: str) -> Path:
        safe = "".join(c for c in certificate_id if c.isalnum() or c in "_-")
        return self.directory / f"pending-{safe}.key"

    def pending_key(self, certificate_id: str, key_type: str) -> PrivateKey:
        """The key waiting for this certificate, or a fresh one of ``key_type`` (kept until certified, so
        a retried CSR — after a held approval or a lost response — uses the same key)."""
        path = self._pending(certificate_id)
        if path.exists():
            return load_private_key_pem(path.read_bytes())
        key = generate_private_key(key_type)
        write_private(path, private_key_to_pem(key))
        return key

    def csr_for(self, certificate_id: str, key_type: str, *, common_name: str | None, sans: list[str]) -> str:
        import ipaddress

        key = self.pending_key(certificate_id, key_type)
        dns, ips = [], []
        for name in sans:
            try:
                ips.append(str(ipaddress.ip_address(name)))
            except ValueError:
                dns.append(name)
        csr = build_csr(key, common_name=common_name or None, dns_names=dns, ip_addresses=ips)
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def file_certified(self, certificate_id: str, certificate_pem: str) -> None:
        """The pending key was certified: file it under its public key's hash."""
        path = self._pending(certificate_id)
        if not path.exists():
            return
        key = load_private_key_pem(path.read_bytes())
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        if spki_sha256(key.public_key()) != spki_sha256(certificate.public_key()):
            return
        write_private(self.directory / f"{spki_sha256(key.public_key())}.key", path.read_bytes())
        path.unlink()

    def key_for(self, certificate_pem: str) -> str | None:
        """The PEM private key matching this certificate, if this host holds it."""
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        wanted = spki_sha256(certificate.public_key())
        path = self.directory / f"{wanted}.key"
        if path.exists():
            return path.read_text()
        for pending in self.directory.glob("pending-*.key"):
            key = load_private_key_pem(pending.read_bytes())
            if spki_sha256(key.public_key()) == wanted:
                write_private(path, pending.read_bytes())
                pending.unlink()
                return path.read_text()
        return None
