"""Certificate profiles: what a certificate issued under a profile may look like, when it renews, and
when its owners are warned that it expires.

The checks here are pure; the issuance service applies them before anything is signed. The renewal and
expiry rules are read here too (from the stored JSON shape), so the API and the services judge a rule
set by the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from certctl.domain.notifications import DEFAULT_THRESHOLDS
from certctl.domain.renewal import DEFAULT_POLICY, RenewalPolicy

KEY_ALGORITHMS = ("ECDSA", "RSA", "Ed25519")
EKU_NAMES = ("serverAuth", "clientAuth", "codeSigning", "emailProtection", "timeStamping")
RENEWAL_MODES = ("fraction", "window")
RENEWAL_KEYS = frozenset({"mode", "fraction", "window_days", "window_seconds", "jitter"})
MAX_JITTER = 0.5
"""The jitter may move a due time earlier by at most half of the renewal window (as RenewalPolicy allows)."""
MAX_THRESHOLDS = 10
MAX_THRESHOLD_DAYS = 365


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
    renewal: RenewalPolicy = DEFAULT_POLICY
    """When versions issued under the profile fall due for renewal."""
    expiry_thresholds_days: tuple[int, ...] = DEFAULT_THRESHOLDS
    """Days before notAfter at which expiry warnings go out, widest first."""


def renewal_policy(rule: Mapping[str, Any] | None) -> RenewalPolicy:
    """A profile's ``renewal`` rule as a :class:`RenewalPolicy`; no rule means the product default.

    ``{"mode": "fraction", "fraction": 0.6}`` renews once that share of the lifetime has passed;
    ``{"mode": "window", "window_days": 20}`` (or ``window_seconds``) renews that long before notAfter.
    ``jitter`` (0 to 0.5, default 0.1) is the share of the renewal window the due time may move earlier.
    Raises ValueError naming the offending field.
    """
    if rule is None:
        return DEFAULT_POLICY
    unknown = sorted(set(rule) - RENEWAL_KEYS)
    if unknown:
        raise ValueError(f"unknown renewal field(s): {', '.join(unknown)}")
    mode = rule.get("mode", "fraction")
    jitter = _number(rule.get("jitter", DEFAULT_POLICY.jitter_fraction), "jitter")
    if not 0 <= jitter <= MAX_JITTER:
        raise ValueError(f"renewal.jitter must be between 0 and {MAX_JITTER}")
    windows = [key for key in ("window_days", "window_seconds") if rule.get(key) is not None]
    if mode == "fraction":
        if windows:
            raise ValueError(f"renewal.{windows[0]} applies only to mode 'window'")
        fraction = _number(rule.get("fraction", DEFAULT_POLICY.lifetime_fraction), "fraction")
        if not 0 < fraction < 1:
            raise ValueError("renewal.fraction must be greater than 0 and less than 1")
        return RenewalPolicy(lifetime_fraction=fraction, jitter_fraction=jitter)
    if mode == "window":
        if rule.get("fraction") is not None:
            raise ValueError("renewal.fraction applies only to mode 'fraction'")
        if len(windows) != 1:
            raise ValueError("renewal mode 'window' needs exactly one of window_days or window_seconds")
        return RenewalPolicy(window=_window(rule, windows[0]), jitter_fraction=jitter)
    raise ValueError(f"renewal.mode must be one of {', '.join(RENEWAL_MODES)}, not {mode!r}")


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"renewal.{name} must be a number")
    return float(value)


def _window(rule: Mapping[str, Any], key: str) -> timedelta:
    value = rule[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"renewal.{key} must be a positive whole number")
    return timedelta(days=value) if key == "window_days" else timedelta(seconds=value)


def expiry_thresholds(days: Sequence[int]) -> tuple[int, ...]:
    """A profile's ``expiry_thresholds_days``, checked and sorted widest first (the stored order).

    Distinct whole numbers of days from 0 (the day it expires) to 365, at most ten of them; an empty
    list turns expiry warnings off for the profile's certificates. Raises ValueError when it is not so.
    """
    if len(days) > MAX_THRESHOLDS:
        raise ValueError(f"at most {MAX_THRESHOLDS} expiry thresholds")
    for value in days:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_THRESHOLD_DAYS:
            raise ValueError(
                f"expiry thresholds are whole days from 0 to {MAX_THRESHOLD_DAYS}, not {value!r}"
            )
    if len(set(days)) != len(days):
        raise ValueError("expiry thresholds must be distinct")
    return tuple(sorted(days, reverse=True))


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
