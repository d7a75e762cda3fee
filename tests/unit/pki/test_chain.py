"""Path validation, chain ordering and bootstrap TLS in certctl.pki.chain / certctl.pki.tls."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certctl.pki.builder import Subject, build_leaf, build_self_signed_ca, build_subordinate_ca
from certctl.pki.chain import chain_pem, order_chain, verify_chain
from certctl.pki.errors import ChainError, PkiError
from certctl.pki.keys import PrivateKey, generate_private_key, load_private_key_pem
from certctl.pki.names import NameConstraints
from certctl.pki.tls import make_bootstrap_tls

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)

Pair = tuple[x509.Certificate, PrivateKey]


def _root(name: str = "Root", path_length: int | None = None) -> Pair:
    key = generate_private_key("ecdsa-p256")
    cert = build_self_signed_ca(
        key=key,
        subject=Subject(common_name=name),
        not_before=NOW,
        not_after=NOW + timedelta(days=3650),
        path_length=path_length,
        name_constraints=None,
    )
    return cert, key


def _sub(
    issuer: Pair, name: str, path_length: int | None, constraints: NameConstraints | None = None
) -> Pair:
    key = generate_private_key("ecdsa-p256")
    cert = build_subordinate_ca(
        issuer_cert=issuer[0],
        issuer_key=issuer[1],
        public_key=key.public_key(),
        subject=Subject(common_name=name),
        not_before=NOW,
        not_after=NOW + timedelta(days=1000),
        path_length=path_length,
        name_constraints=constraints,
        crl_url=None,
        ca_issuers_url=None,
    )
    return cert, key


def _leaf(
    issuer: Pair, dns: str = "www.example.com", ekus: tuple[str, ...] = ("serverAuth",)
) -> x509.Certificate:
    return build_leaf(
        issuer_cert=issuer[0],
        issuer_key=issuer[1],
        public_key=generate_private_key("ecdsa-p256").public_key(),
        common_name=dns,
        dns_names=(dns,),
        ip_addresses=("192.0.2.5",),
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
        ekus=ekus,
    )


def _raw_leaf(issuer: Pair, dns: str) -> x509.Certificate:
    """A leaf built without certctl's own checks, to exercise the validator."""
    key = generate_private_key("ecdsa-p256")
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[0].public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(issuer[1], hashes.SHA256())
    )


def _raw_sub_ca(issuer: Pair, name: str) -> Pair:
    """A CA certificate that ignores the issuer's path length, built without certctl's checks."""
    key = generate_private_key("ecdsa-p256")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=900))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[0].public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(issuer[1], hashes.SHA256())
    )
    return cert, key


def _hierarchy() -> tuple[Pair, Pair, Pair]:
    root = _root()
    intermediate = _sub(root, "Intermediate", 1, NameConstraints(permitted_dns=("example.com",)))
    issuing = _sub(intermediate, "Issuing", 0)
    return root, intermediate, issuing


def test_valid_chain_for_server_name_ip_and_without_name() -> None:
    root, intermediate, issuing = _hierarchy()
    leaf = _leaf(issuing)
    chain = [issuing[0], intermediate[0]]
    verify_chain(leaf=leaf, intermediates=chain, root=root[0], at=LATER, dns_name="www.example.com")
    verify_chain(leaf=leaf, intermediates=chain, root=root[0], at=LATER, dns_name="WWW.example.com")
    verify_chain(leaf=leaf, intermediates=chain, root=root[0], at=LATER, dns_name="192.0.2.5")
    verify_chain(leaf=leaf, intermediates=chain, root=root[0], at=LATER, dns_name=None)
    client = _leaf(issuing, ekus=("clientAuth",))
    verify_chain(leaf=client, intermediates=chain, root=root[0], at=LATER, dns_name=None)


def test_wrong_name_expired_and_missing_intermediate_fail() -> None:
    root, intermediate, issuing = _hierarchy()
    leaf = _leaf(issuing)
    chain = [issuing[0], intermediate[0]]
    with pytest.raises(ChainError, match="does not verify"):
        verify_chain(leaf=leaf, intermediates=chain, root=root[0], at=LATER, dns_name="api.example.com")
    with pytest.raises(ChainError):
        verify_chain(leaf=leaf, intermediates=chain, root=root[0], at=NOW + timedelta(days=91), dns_name=None)
    with pytest.raises(ChainError):
        verify_chain(leaf=leaf, intermediates=[issuing[0]], root=root[0], at=LATER, dns_name=None)
    with pytest.raises(ChainError):
        verify_chain(leaf=leaf, intermediates=chain, root=_root()[0], at=LATER, dns_name=None)
    with pytest.raises(PkiError, match="timezone-aware"):
        verify_chain(
            leaf=leaf,
            intermediates=chain,
            root=root[0],
            at=datetime(2025, 6, 2),  # deliberately naive
            dns_name=None,
        )


def test_client_only_leaf_is_not_a_server_certificate() -> None:
    root, intermediate, issuing = _hierarchy()
    client = _leaf(issuing, ekus=("clientAuth",))
    with pytest.raises(ChainError, match="EKU"):
        verify_chain(
            leaf=client,
            intermediates=[issuing[0], intermediate[0]],
            root=root[0],
            at=LATER,
            dns_name="www.example.com",
        )


def test_name_constraint_violation_is_caught_by_validation() -> None:
    root, intermediate, issuing = _hierarchy()
    evil = _raw_leaf(issuing, "www.evil.org")
    with pytest.raises(ChainError):
        verify_chain(
            leaf=evil,
            intermediates=[issuing[0], intermediate[0]],
            root=root[0],
            at=LATER,
            dns_name="www.evil.org",
        )


def test_path_length_violation_is_caught_by_validation() -> None:
    root = _root(path_length=0)
    rogue = _raw_sub_ca(root, "Rogue")
    leaf = _leaf(rogue)
    with pytest.raises(ChainError):
        verify_chain(leaf=leaf, intermediates=[rogue[0]], root=root[0], at=LATER, dns_name="www.example.com")


def test_order_chain_sorts_pool_and_stops_before_root() -> None:
    root, intermediate, issuing = _hierarchy()
    leaf = _leaf(issuing)
    lookalike = _root("Issuing")  # same subject as the issuing CA, different key
    unrelated = _root("Unrelated")
    pool = [root[0], intermediate[0], issuing[0], lookalike[0], unrelated[0], leaf]
    random.Random(7).shuffle(pool)
    assert order_chain(leaf, pool) == [leaf, issuing[0], intermediate[0]]
    assert order_chain(leaf, [intermediate[0]]) == [leaf]
    assert order_chain(leaf, []) == [leaf]
    assert order_chain(leaf, [issuing[0]]) == [leaf, issuing[0]]
    assert order_chain(root[0], pool) == [root[0]]


def test_chain_pem_round_trip() -> None:
    _, intermediate, issuing = _hierarchy()
    leaf = _leaf(issuing)
    pem = chain_pem([leaf, issuing[0], intermediate[0]])
    assert pem.count("-----BEGIN CERTIFICATE-----") == 3
    assert x509.load_pem_x509_certificates(pem.encode("ascii")) == [leaf, issuing[0], intermediate[0]]
    assert chain_pem([]) == ""


def test_bootstrap_tls_material_verifies() -> None:
    material = make_bootstrap_tls(
        hostnames=["certctl.internal", "10.0.0.7", "certctl.internal"], ip_addresses=["192.0.2.1"], now=NOW
    )
    ca = x509.load_pem_x509_certificate(material.ca_cert_pem)
    server = x509.load_pem_x509_certificate(material.server_cert_pem)
    assert ca.subject.rfc4514_string() == "CN=certctl bootstrap CA,O=certctl"
    assert ca.not_valid_after_utc - ca.not_valid_before_utc >= timedelta(days=3650)
    assert server.not_valid_after_utc - server.not_valid_before_utc == timedelta(days=397)
    assert server.not_valid_before_utc <= NOW
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["certctl.internal", "localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [
        "10.0.0.7",
        "192.0.2.1",
        "127.0.0.1",
        "::1",
    ]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    for name in ("certctl.internal", "localhost", "127.0.0.1", "::1", "10.0.0.7"):
        verify_chain(leaf=server, intermediates=[], root=ca, at=NOW, dns_name=name)
    server_key = load_private_key_pem(material.server_key_pem)
    assert server_key.public_key() == server.public_key()
    assert load_private_key_pem(material.ca_key_pem).public_key() == ca.public_key()


def test_bootstrap_tls_defaults_and_bad_ip() -> None:
    material = make_bootstrap_tls(hostnames=[], ip_addresses=[], now=NOW)
    server = x509.load_pem_x509_certificate(material.server_cert_pem)
    assert server.subject.rfc4514_string() == "CN=localhost"
    with pytest.raises(PkiError, match="not a valid IP address"):
        make_bootstrap_tls(hostnames=[], ip_addresses=["localhost"], now=NOW)
