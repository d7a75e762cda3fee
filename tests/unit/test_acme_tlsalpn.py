"""The tls-alpn-01 certificate check for names and for IP addresses (RFC 8737 §3, RFC 8738 §6)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certctl.services.acme_challenges_tlsalpn import (
    ACME_IDENTIFIER,
    acme_identifier_value,
    check_certificate,
    sni_name,
)
from certctl.services.acme_errors import AcmeError

KEY_AUTHORIZATION = "token.thumbprint"


def _challenge_certificate(*sans: x509.GeneralName) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(ACME_IDENTIFIER, acme_identifier_value(KEY_AUTHORIZATION)),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("host.example.test", "host.example.test"),
        ("192.0.2.7", "7.2.0.192.in-addr.arpa"),
        ("2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"),
    ],
)
def test_sni_name(name: str, expected: str) -> None:
    assert sni_name(name) == expected


@pytest.mark.parametrize("name", ["192.0.2.7", "2001:db8::1"])
def test_an_address_is_proven_by_exactly_that_ip_san(name: str) -> None:
    address = ipaddress.ip_address(name)
    check_certificate(
        _challenge_certificate(x509.IPAddress(address)), name=name, key_authorization=KEY_AUTHORIZATION
    )
    wrong = [
        _challenge_certificate(x509.DNSName(name)),
        _challenge_certificate(x509.DNSName(sni_name(name))),
        _challenge_certificate(x509.IPAddress(address), x509.DNSName("extra.example.test")),
        _challenge_certificate(x509.IPAddress(ipaddress.ip_address("192.0.2.8"))),
    ]
    for der in wrong:
        with pytest.raises(AcmeError) as refused:
            check_certificate(der, name=name, key_authorization=KEY_AUTHORIZATION)
        assert refused.value.kind == "unauthorized"


def test_a_name_is_not_proven_by_an_ip_san() -> None:
    der = _challenge_certificate(x509.IPAddress(ipaddress.ip_address("192.0.2.7")))
    with pytest.raises(AcmeError) as refused:
        check_certificate(der, name="host.example.test", key_authorization=KEY_AUTHORIZATION)
    assert refused.value.kind == "unauthorized"
