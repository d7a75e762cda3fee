"""PKCS#12, PEM and fingerprint export in certctl.pki.export."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from certctl.pki.builder import Subject, build_leaf, build_self_signed_ca, build_subordinate_ca
from certctl.pki.errors import PkiError
from certctl.pki.export import cert_pem, fingerprint_sha256, to_pkcs12
from certctl.pki.keys import PrivateKey, generate_private_key, private_key_to_pem

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def _material(spec: str = "ecdsa-p256") -> tuple[PrivateKey, x509.Certificate, list[x509.Certificate]]:
    root_key = generate_private_key("ecdsa-p256")
    root = build_self_signed_ca(
        key=root_key,
        subject=Subject(common_name="Export Root"),
        not_before=NOW,
        not_after=NOW + timedelta(days=3650),
        path_length=None,
        name_constraints=None,
    )
    sub_key = generate_private_key("ecdsa-p384")
    sub = build_subordinate_ca(
        issuer_cert=root,
        issuer_key=root_key,
        public_key=sub_key.public_key(),
        subject=Subject(common_name="Export Sub"),
        not_before=NOW,
        not_after=NOW + timedelta(days=1000),
        path_length=0,
        name_constraints=None,
        crl_url=None,
        ca_issuers_url=None,
    )
    key = generate_private_key(spec)
    leaf = build_leaf(
        issuer_cert=sub,
        issuer_key=sub_key,
        public_key=key.public_key(),
        common_name="export.example.com",
        dns_names=("export.example.com",),
        not_before=NOW,
        not_after=NOW + timedelta(days=90),
    )
    return key, leaf, [sub, root]


@pytest.mark.parametrize("spec", ["ecdsa-p256", "rsa-2048", "ed25519"])
def test_pkcs12_round_trip_with_password(spec: str) -> None:
    key, leaf, chain = _material(spec)
    data = to_pkcs12(key=key, cert=leaf, chain=chain, password=b"s3cret", friendly_name="export.example.com")
    loaded = pkcs12.load_pkcs12(data, b"s3cret")
    assert loaded.key is not None
    assert private_key_to_pem(loaded.key) == private_key_to_pem(key)  # type: ignore[arg-type]
    assert loaded.cert is not None
    assert loaded.cert.certificate == leaf
    assert loaded.cert.friendly_name == b"export.example.com"
    assert [c.certificate for c in loaded.additional_certs] == chain
    loaded_key, loaded_cert, loaded_chain = pkcs12.load_key_and_certificates(data, b"s3cret")
    assert loaded_cert == leaf
    assert loaded_chain == chain
    assert loaded_key is not None
    with pytest.raises(ValueError, match="Invalid password"):
        pkcs12.load_key_and_certificates(data, b"wrong")


def test_pkcs12_without_password_and_without_key() -> None:
    key, leaf, chain = _material()
    plain = to_pkcs12(key=key, cert=leaf, chain=[], password=None, friendly_name="plain")
    loaded_key, loaded_cert, loaded_chain = pkcs12.load_key_and_certificates(plain, None)
    assert loaded_cert == leaf
    assert loaded_chain == []
    assert loaded_key is not None
    cert_only = to_pkcs12(key=None, cert=leaf, chain=chain, password=b"pw", friendly_name="")
    no_key, no_key_cert, certs = pkcs12.load_key_and_certificates(cert_only, b"pw")
    assert no_key is None
    assert no_key_cert is None  # without a key bag, readers cannot tell which certificate is "the" one
    assert certs == [leaf, *chain]  # ... but the end-entity certificate comes first


def test_pkcs12_refuses_empty_password_and_mismatched_key() -> None:
    key, leaf, chain = _material()
    with pytest.raises(PkiError, match="must not be empty"):
        to_pkcs12(key=key, cert=leaf, chain=chain, password=b"", friendly_name="x")
    other = generate_private_key("ecdsa-p256")
    with pytest.raises(PkiError, match="does not match"):
        to_pkcs12(key=other, cert=leaf, chain=chain, password=b"pw", friendly_name="x")


def test_fingerprint_and_pem() -> None:
    _, leaf, _ = _material()
    fingerprint = fingerprint_sha256(leaf)
    assert fingerprint == hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert len(fingerprint) == 64
    assert fingerprint == fingerprint.lower()
    pem = cert_pem(leaf)
    assert pem.startswith("-----BEGIN CERTIFICATE-----\n")
    assert x509.load_pem_x509_certificate(pem.encode("ascii")) == leaf
