"""Certificate profiles: stored as a JSON rule set, used as the pure :class:`domain.profiles.Profile`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from certctl.domain.profiles import Profile


def default_rules(**overrides: Any) -> dict[str, Any]:
    """A profile's rule set with the product defaults (the stored shape), changed where asked."""
    rules: dict[str, Any] = {
        "allowed_key_algorithms": ["ECDSA", "RSA", "Ed25519"],
        "min_rsa_bits": 2048,
        "min_ecdsa_bits": 256,
        "max_ttl_seconds": 397 * 86400,
        "default_ttl_seconds": 90 * 86400,
        "allowed_ekus": ["serverAuth"],
        "default_ekus": ["serverAuth"],
        "san_patterns": [],
        "must_staple": False,
        "requires_approval": False,
        "allow_server_keygen": True,
        "allow_ip_sans": True,
    }
    unknown = set(overrides) - set(rules)
    if unknown:
        raise ValueError(f"unknown profile rules: {', '.join(sorted(unknown))}")
    return rules | overrides


def profile_from_row(row: dict[str, Any]) -> Profile:
    rules = row["rules"]
    return Profile(
        name=row["name"],
        allowed_key_algorithms=tuple(rules["allowed_key_algorithms"]),
        min_rsa_bits=int(rules["min_rsa_bits"]),
        min_ecdsa_bits=int(rules["min_ecdsa_bits"]),
        max_ttl=timedelta(seconds=int(rules["max_ttl_seconds"])),
        default_ttl=timedelta(seconds=int(rules["default_ttl_seconds"])),
        allowed_ekus=tuple(rules["allowed_ekus"]),
        default_ekus=tuple(rules["default_ekus"]),
        san_patterns=tuple(rules["san_patterns"]),
        must_staple=bool(rules["must_staple"]),
        requires_approval=bool(rules["requires_approval"]),
        allow_server_keygen=bool(rules["allow_server_keygen"]),
        allow_ip_sans=bool(rules["allow_ip_sans"]),
    )
