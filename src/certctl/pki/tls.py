"""Bootstrap TLS material so a fresh certctl server can serve HTTPS before any CA is configured.

A private ECDSA P-256 root ("certctl bootstrap CA", ten years) issues one server
certificate (397 days, the CA/Browser Forum maximum lifetime) whose subjectAltName always
covers the loopback names, so local clients and agents can pin the bootstrap CA.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization

from certctl.pki.builder import Subject, build_leaf, build_self_signed_ca
from certctl.pki.errors import PkiError
from certctl.pki.keys import generate_private_key, private_key_to_pem

__all__ = ["BootstrapTls", "make_bootstrap_tls"]

_CA_LIFETIME = timedelta(days=3652)
_SERVER_LIFETIME = timedelta(days=397)
_CLOCK_SKEW = timedelta(minutes=5)
_MAX_COMMON_NAME = 64
_LOOPBACK_NAMES = ("localhost",)
_LOOPBACK_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class BootstrapTls:
    """PEM-encoded bootstrap CA and server certificate with their unencrypted PKCS#8 keys."""

    ca_cert_pem: bytes
    ca_key_pem: bytes
    server_cert_pem: bytes
    server_key_pem: bytes


def _split_names(hostnames: Sequence[str], ip_addresses: Sequence[str]) -> tuple[list[str], list[str]]:
    """Canonical, de-duplicated DNS and IP SAN values; IP literals given as host names move to IPs."""
    dns: dict[str, None] = {}
    ips: dict[str, None] = {}
    for raw in hostnames:
        name = raw.strip().lower().rstrip(".")
        if not name:
            continue
        try:
            ips[str(ipaddress.ip_address(name))] = None
        except ValueError:
            dns[name] = None
    for raw in ip_addresses:
        try:
            ips[str(ipaddress.ip_address(raw.strip()))] = None
        except ValueError:
            raise PkiError(f"{raw!r} is not a valid IP address") from None
    for name in _LOOPBACK_NAMES:
        dns.setdefault(name, None)
    for address in _LOOPBACK_IPS:
        ips.setdefault(address, None)
    return list(dns), list(ips)


def make_bootstrap_tls(
    *, hostnames: Sequence[str], ip_addresses: Sequence[str], now: datetime
) -> BootstrapTls:
    """Create the bootstrap CA and a serverAuth certificate for ``hostnames``/``ip_addresses``.

    Both certificates start five minutes before ``now`` to tolerate client clock skew.
    The CA has pathLenConstraint 0 (RFC 5280 §4.2.1.9): it can only issue end entities.
    """
    dns_names, ips = _split_names(hostnames, ip_addresses)
    start = now - _CLOCK_SKEW
    ca_key = generate_private_key("ecdsa-p256")
    ca_cert = build_self_signed_ca(
        key=ca_key,
        subject=Subject(common_name="certctl bootstrap CA", organization="certctl"),
        not_before=start,
        not_after=start + _CA_LIFETIME,
        path_length=0,
        name_constraints=None,
    )
    server_key = generate_private_key("ecdsa-p256")
    server_cert = build_leaf(
        issuer_cert=ca_cert,
        issuer_key=ca_key,
        public_key=server_key.public_key(),
        common_name=next(name for name in dns_names if len(name) <= _MAX_COMMON_NAME),
        dns_names=dns_names,
        ip_addresses=ips,
        emails=(),
        not_before=start,
        not_after=start + _SERVER_LIFETIME,
        ekus=("serverAuth",),
    )
    return BootstrapTls(
        ca_cert_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        ca_key_pem=private_key_to_pem(ca_key),
        server_cert_pem=server_cert.public_bytes(serialization.Encoding.PEM),
        server_key_pem=private_key_to_pem(server_key),
    )
