"""Key specs, description and PEM handling in certctl.pki.keys."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x25519

from certctl.pki.errors import KeyPolicyError, PkiError
from certctl.pki.keys import (
    KEY_SPECS,
    KeyInfo,
    as_public_key,
    describe_public_key,
    generate_private_key,
    load_private_key_pem,
    private_key_to_pem,
    public_key_pem,
    signature_hash_for,
)

EXPECTED = {
    "ecdsa-p256": KeyInfo("ECDSA", 256, "ecdsa-p256"),
    "ecdsa-p384": KeyInfo("ECDSA", 384, "ecdsa-p384"),
    "rsa-2048": KeyInfo("RSA", 2048, "rsa-2048"),
    "rsa-3072": KeyInfo("RSA", 3072, "rsa-3072"),
    "rsa-4096": KeyInfo("RSA", 4096, "rsa-4096"),
    "ed25519": KeyInfo("Ed25519", 256, "ed25519"),
}


def test_key_specs_are_the_documented_set() -> None:
    assert KEY_SPECS == ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")
    assert set(EXPECTED) == set(KEY_SPECS)


@pytest.mark.parametrize("spec", KEY_SPECS)
def test_generate_and_describe_every_spec(spec: str) -> None:
    key = generate_private_key(spec)
    assert describe_public_key(key.public_key()) == EXPECTED[spec]
    assert describe_public_key(key) == EXPECTED[spec]  # private keys describe their public half
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.public_key().public_numbers().e == 65537


@pytest.mark.parametrize("spec", ["rsa-1024", "ecdsa-p521", "RSA-2048", "", "ed448", "rsa-"])
def test_unknown_spec_is_refused(spec: str) -> None:
    with pytest.raises(KeyPolicyError) as info:
        generate_private_key(spec)
    assert "unknown key spec" in info.value.message


def test_rsa_sizes_outside_specs_are_described_without_spec() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert describe_public_key(key.public_key()) == KeyInfo("RSA", 1024, None)


@pytest.mark.parametrize(
    ("key", "label"),
    [
        (dsa.generate_private_key(key_size=2048).public_key(), "DSA"),
        (ed448.Ed448PrivateKey.generate().public_key(), "Ed448"),
        (x25519.X25519PrivateKey.generate().public_key(), "X25519"),
        (ec.generate_private_key(ec.SECP521R1()).public_key(), "secp521r1"),
        (ec.generate_private_key(ec.SECP256K1()).public_key(), "secp256k1"),
        ("not a key", "str"),
    ],
)
def test_unsupported_keys_are_refused(key: object, label: str) -> None:
    with pytest.raises(KeyPolicyError) as info:
        describe_public_key(key)
    assert label in info.value.message
    with pytest.raises(KeyPolicyError):
        as_public_key(key)


def test_errors_carry_a_message_attribute() -> None:
    error = KeyPolicyError("nope")
    assert isinstance(error, PkiError)
    assert error.message == "nope"
    assert str(error) == "nope"


@pytest.mark.parametrize("spec", ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"])
def test_private_key_pem_round_trip(spec: str) -> None:
    key = generate_private_key(spec)
    pem = private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    loaded = load_private_key_pem(pem)
    assert private_key_to_pem(loaded) == pem
    assert public_key_pem(loaded) == public_key_pem(key.public_key())
    assert public_key_pem(key).startswith(b"-----BEGIN PUBLIC KEY-----")


def test_traditional_rsa_and_sec1_pem_load() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs1 = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pkcs1.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert isinstance(load_private_key_pem(pkcs1), rsa.RSAPrivateKey)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    sec1 = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert isinstance(load_private_key_pem(sec1), ec.EllipticCurvePrivateKey)


def _pem(key: object) -> bytes:
    assert hasattr(key, "private_bytes")
    data: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return data


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"\x30\x82\x01\x00" + b"\x00" * 256,
    ],
)
def test_load_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(KeyPolicyError):
        load_private_key_pem(data)


def test_load_encrypted_key_is_refused_without_leaking() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(KeyPolicyError) as info:
        load_private_key_pem(pem)
    assert "encrypted" in info.value.message
    assert "BEGIN" not in info.value.message


@pytest.mark.parametrize(
    "key",
    [
        dsa.generate_private_key(key_size=2048),
        ed448.Ed448PrivateKey.generate(),
        ec.generate_private_key(ec.SECP521R1()),
    ],
)
def test_load_unsupported_key_types_are_refused(key: object) -> None:
    with pytest.raises(KeyPolicyError) as info:
        load_private_key_pem(_pem(key))
    assert "unsupported" in info.value.message


def test_signature_hash_matches_key_strength() -> None:
    assert isinstance(signature_hash_for(ec.generate_private_key(ec.SECP256R1())), hashes.SHA256)
    assert isinstance(signature_hash_for(ec.generate_private_key(ec.SECP384R1())), hashes.SHA384)
    assert isinstance(
        signature_hash_for(rsa.generate_private_key(public_exponent=65537, key_size=2048)), hashes.SHA256
    )
    assert signature_hash_for(ed25519.Ed25519PrivateKey.generate()) is None
    assert signature_hash_for(ed25519.Ed25519PrivateKey.generate().public_key()) is None
    with pytest.raises(KeyPolicyError):
        signature_hash_for(ec.generate_private_key(ec.SECP521R1()))
