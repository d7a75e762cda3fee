"""Certificate profiles: stored as a JSON rule set, used as the pure :class:`domain.profiles.Profile`.

``renewal`` and ``expiry_thresholds_days`` are optional in the stored shape: a rule set without them (every
profile stored before they existed, too) uses the product defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from certctl.domain.notifications import DEFAULT_THRESHOLDS
from certctl.domain.profiles import Profile, expiry_thresholds, renewal_policy

OPTIONAL_RULES = ("renewal", "expiry_thresholds_days")
"""Rules absent from the defaults; absent (or null) means the product default."""


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
    unknown = set(overrides) - set(rules) - set(OPTIONAL_RULES)
    if unknown:
        raise ValueError(f"unknown profile rules: {', '.join(sorted(unknown))}")
    return rules | overrides


def profile_from_row(row: dict[str, Any]) -> Profile:
    rules = row["rules"]
    thresholds = profile_thresholds(row)
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
        renewal=renewal_policy(rules.get("renewal")),
        expiry_thresholds_days=DEFAULT_THRESHOLDS if thresholds is None else thresholds,
    )


def profile_thresholds(row: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The expiry thresholds a profile row sets itself, or None when it keeps the default."""
    days = (row.get("rules") or {}).get("expiry_thresholds_days")
    return None if days is None else expiry_thresholds(days)
