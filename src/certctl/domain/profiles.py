"""Certificate profiles: what a certificate issued under a profile may look like.

The checks here are pure; the issuance service applies them before anything is signed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

KEY_ALGORITHMS = ("ECDSA", "RSA", "Ed25519")
EKU_NAMES = ("serverAuth", "clientAuth", "codeSigning", "emailProtection", "timeStamping")


@dataclass(frozen=True)
class Profile:
    name: str
    allowed_key_algorithms: tuple[str, ...] = ("ECDSA", "RSA")
    min_rsa_bits: int = 2048
    min_ecdsa_bits: int = 256
    max_ttl: timedelta = timedelta(days=397)
    default_ttl: timedelta = timedelta(days=90)
    allowed_ekus: tuple[str, ...] = ("serverAuth",)
    default_ekus: tuple[str, ...] = ("serverAuth",)
    san_patterns: tuple[str, ...] = field(default_factory=tuple)
    must_staple: bool = False
    requires_approval: bool = False
    allow_server_keygen: bool = True
    allow_ip_sans: bool = True


def key_violations(profile: Profile, *, algorithm: str, size: int) -> list[str]:
    """Key algorithm and minimum size (CA/B Forum BR §6.1.5 floors are the defaults)."""
    if algorithm not in profile.allowed_key_algorithms:
        allowed = ", ".join(profile.allowed_key_algorithms)
        return [f"key algorithm {algorithm} is not allowed by profile {profile.name!r} (allowed: {allowed})"]
    if algorithm == "RSA" and size < profile.min_rsa_bits:
        return [f"RSA key of {size} bits is below the profile minimum of {profile.min_rsa_bits}"]
    if algorithm == "ECDSA" and size < profile.min_ecdsa_bits:
        return [f"ECDSA key of {size} bits is below the profile minimum of {profile.min_ecdsa_bits}"]
    return []


def ttl_violations(profile: Profile, ttl: timedelta) -> list[str]:
    if ttl <= timedelta(0):
        return ["validity must be positive"]
    if ttl > profile.max_ttl:
        return [
            f"requested validity of {_human(ttl)} exceeds the profile maximum of {_human(profile.max_ttl)}"
        ]
    return []


def eku_violations(profile: Profile, ekus: tuple[str, ...]) -> list[str]:
    bad = [eku for eku in ekus if eku not in profile.allowed_ekus]
    if bad:
        return [f"extended key usage {', '.join(bad)} is not allowed by profile {profile.name!r}"]
    return []


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    return f"{seconds} seconds"
