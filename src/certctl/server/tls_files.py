"""The HTTPS listener's TLS material: operator-supplied files, or a bootstrap CA made on first start."""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl.errors import ConfigurationError
from certctl.pki.errors import PkiError
from certctl.pki.keys import load_private_key_pem
from certctl.pki.tls import make_bootstrap_tls


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    ca_file: Path | None
    generated: bool


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_tls(
    *, data_dir: Path, cert_file: Path | None, key_file: Path | None, listen_host: str, now: datetime
) -> TlsFiles:
    if (cert_file is None) != (key_file is None):
        raise ConfigurationError("give both --tls-cert-file and --tls-key-file, or neither")
    if cert_file is not None and key_file is not None:
        check_tls(cert_file, key_file, now=now)
        return TlsFiles(cert_file, key_file, None, generated=False)
    tls_dir = data_dir / "tls"
    ca, cert, key = tls_dir / "ca.crt", tls_dir / "server.crt", tls_dir / "server.key"
    if cert.exists() and key.exists():
        check_tls(cert, key, now=now)
        return TlsFiles(cert, key, ca if ca.exists() else None, generated=False)
    tls_dir.mkdir(parents=True, exist_ok=True)
    names, ips = ["localhost"], ["127.0.0.1", "::1"]
    try:
        address = ipaddress.ip_address(listen_host)
        if not address.is_unspecified:
            ips.append(str(address))
    except ValueError:
        names.append(listen_host)
    material = make_bootstrap_tls(hostnames=names, ip_addresses=ips, now=now)
    _write(tls_dir / "ca.key", material.ca_key_pem, 0o600)
    _write(ca, material.ca_cert_pem, 0o644)
    _write(key, material.server_key_pem, 0o600)
    _write(cert, material.server_cert_pem + material.ca_cert_pem, 0o644)
    return TlsFiles(cert, key, ca, generated=True)


def check_tls(cert_file: Path, key_file: Path, *, now: datetime) -> None:
    """Refuse to start on unusable TLS material, with a message that says what to fix."""
    try:
        certificates = x509.load_pem_x509_certificates(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"TLS certificate {cert_file} cannot be read as PEM: {exc}") from exc
    try:
        key = load_private_key_pem(key_file.read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"TLS key {key_file} cannot be read: {exc.strerror}") from exc
    except PkiError as exc:
        raise ConfigurationError(f"TLS key {key_file} is not a usable private key: {exc.message}") from exc
    leaf = certificates[0]
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if leaf.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ConfigurationError(f"TLS key {key_file} does not match certificate {cert_file}")
    if leaf.not_valid_after_utc <= now:
        raise ConfigurationError(
            f"TLS certificate {cert_file} expired on {leaf.not_valid_after_utc:%Y-%m-%d}"
        )


def server_ssl_context(files: TlsFiles, *, min_version: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(files.cert_file), str(files.key_file))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(f"TLS material cannot be loaded: {exc}") from exc
    context.set_alpn_protocols(["http/1.1"])
    return context
