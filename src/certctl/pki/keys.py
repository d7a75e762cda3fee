"""Key specifications, generation, description and PEM (de)serialisation.

certctl supports exactly three public-key algorithm families for certificates:
ECDSA on the NIST P-256 / P-384 curves (RFC 5480), RSA (RFC 8017) and Ed25519
(RFC 8410).  Everything else (DSA, Ed448, other curves, X25519/X448) is refused with
:class:`~certctl.pki.errors.KeyPolicyError` so that later code can rely on the
:data:`PrivateKey` / :data:`PublicKey` unions being exhaustive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from certctl.pki.errors import KeyPolicyError

__all__ = [
    "KEY_SPECS",
    "KeyInfo",
    "PrivateKey",
    "PublicKey",
    "as_public_key",
    "describe_public_key",
    "generate_private_key",
    "load_private_key_pem",
    "private_key_to_pem",
    "public_key_pem",
    "signature_hash_for",
]

KEY_SPECS: tuple[str, ...] = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

_PRIVATE_TYPES = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)
_PUBLIC_TYPES = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)

# Supported named curves (RFC 5480 §2.1.1.1): curve name -> (key spec, field size in bits).
_CURVES: dict[str, tuple[str, int]] = {
    ec.SECP256R1.name: ("ecdsa-p256", 256),
    ec.SECP384R1.name: ("ecdsa-p384", 384),
}
_RSA_SPEC_SIZES = (2048, 3072, 4096)
_RSA_PUBLIC_EXPONENT = 65537


@dataclass(frozen=True)
class KeyInfo:
    """What a public key is, in the vocabulary of certificate profiles.

    ``algorithm`` is ``"ECDSA"``, ``"RSA"`` or ``"Ed25519"``; ``size`` is the curve size
    (256/384), the RSA modulus length, or 256 for Ed25519; ``spec`` is the matching entry
    of :data:`KEY_SPECS`, or ``None`` when the key is supported but not one of the specs
    certctl generates (for example a 1024- or 8192-bit RSA key).
    """

    algorithm: str
    size: int
    spec: str | None


def generate_private_key(spec: str) -> PrivateKey:
    """Generate a fresh private key for one of :data:`KEY_SPECS` (RSA uses e = 65537, RFC 8017 §3.1)."""
    if spec == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if spec == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if spec == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if spec.startswith("rsa-") and spec in KEY_SPECS:
        return rsa.generate_private_key(public_exponent=_RSA_PUBLIC_EXPONENT, key_size=int(spec[4:]))
    raise KeyPolicyError(f"unknown key spec {spec!r}; expected one of {', '.join(KEY_SPECS)}")


def _key_kind(key: object) -> str:
    """A user-facing name for an arbitrary key object's type (never its contents)."""
    name = type(key).__name__.removeprefix("_")
    for prefix, label in (("DSA", "DSA"), ("Ed448", "Ed448"), ("X25519", "X25519"), ("X448", "X448")):
        if name.startswith(prefix):
            return label
    return name


def as_public_key(key: object) -> PublicKey:
    """Narrow any key object to a supported :data:`PublicKey`, taking the public half of a private key.

    Raises :class:`KeyPolicyError` for DSA, Ed448, X25519/X448, unsupported curves or
    anything that is not a key.
    """
    if isinstance(key, _PRIVATE_TYPES):
        key = key.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            raise KeyPolicyError(f"unsupported elliptic curve {key.curve.name}; use P-256 or P-384")
        return key
    if isinstance(key, _PUBLIC_TYPES):
        return key
    raise KeyPolicyError(f"unsupported key type: {_key_kind(key)}")


def describe_public_key(key: object) -> KeyInfo:
    """Describe a public (or private) key as a :class:`KeyInfo` (RFC 5480, RFC 8017, RFC 8410)."""
    public = as_public_key(key)
    if isinstance(public, ec.EllipticCurvePublicKey):
        spec, size = _CURVES[public.curve.name]
        return KeyInfo(algorithm="ECDSA", size=size, spec=spec)
    if isinstance(public, rsa.RSAPublicKey):
        bits = public.key_size
        return KeyInfo(algorithm="RSA", size=bits, spec=f"rsa-{bits}" if bits in _RSA_SPEC_SIZES else None)
    return KeyInfo(algorithm="Ed25519", size=256, spec="ed25519")


def signature_hash_for(key: PrivateKey | PublicKey) -> hashes.SHA256 | hashes.SHA384 | None:
    """The digest to sign with a key: SHA-256 for RSA and P-256, SHA-384 for P-384, none for Ed25519.

    Matches the hash strength to the curve (RFC 5480 §4) and uses the pure EdDSA form
    required for Ed25519 signatures in certificates (RFC 8410 §6).
    """
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        name = key.curve.name
        if name == ec.SECP256R1.name:
            return hashes.SHA256()
        if name == ec.SECP384R1.name:
            return hashes.SHA384()
        raise KeyPolicyError(f"unsupported elliptic curve {name}; use P-256 or P-384")
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return hashes.SHA256()
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return None
    raise KeyPolicyError(f"unsupported key type: {_key_kind(key)}")


def private_key_to_pem(key: PrivateKey) -> bytes:
    """Serialise a private key as unencrypted PKCS#8 PEM (RFC 5958, RFC 7468 §10)."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_key_pem(data: bytes) -> PrivateKey:
    """Load an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1) and check it is supported."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyPolicyError("private key is encrypted; provide an unencrypted key") from None
    except UnsupportedAlgorithm:
        raise KeyPolicyError("private key uses an unsupported algorithm") from None
    except ValueError:
        raise KeyPolicyError("data is not a valid PEM private key") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        as_public_key(key)
        return key
    if isinstance(key, _PRIVATE_TYPES):
        return key
    raise KeyPolicyError(f"unsupported key type: {_key_kind(key)}")


def public_key_pem(key: PrivateKey | PublicKey) -> bytes:
    """Serialise the public half of a key as SubjectPublicKeyInfo PEM (RFC 5280 §4.1.2.7, RFC 7468 §13)."""
    public = key.public_key() if isinstance(key, _PRIVATE_TYPES) else key
    return public.public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )
