"""When a certificate should be renewed, and when a failed job should be tried again.

Pure functions: time is passed in. A renewal is due either a fixed window before expiry or once a fraction
of the lifetime has elapsed (default 2/3, so a 47-day certificate (CA/B Forum SC-081v3) renews with about
16 days to spare and a 15-minute one with 5 minutes). A deterministic per-certificate jitter moves the due
time earlier by up to a bounded fraction of the renewal window, so a fleet issued on one day does not
renew in one minute, and a restart does not reshuffle the schedule. When the CA publishes an ACME
Renewal Information window (RFC 9773 §4.2) the renewal happens at a point inside that window instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RenewalPolicy:
    """``window`` (renew this long before notAfter) wins over ``lifetime_fraction`` when both are set."""

    lifetime_fraction: float = 2 / 3
    window: timedelta | None = None
    jitter_fraction: float = 0.1
    """Largest share of the renewal window (due time → notAfter) the jitter may move the due time by."""
    auto_renew: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.lifetime_fraction < 1:
            raise ValueError("lifetime_fraction must be between 0 and 1")
        if self.window is not None and self.window <= timedelta(0):
            raise ValueError("window must be positive")
        if not 0 <= self.jitter_fraction <= 0.5:
            raise ValueError("jitter_fraction must be between 0 and 0.5")


@dataclass(frozen=True)
class SuggestedWindow:
    """ARI ``suggestedWindow`` (RFC 9773 §4.2): the CA asks for renewal between start and end."""

    start: datetime
    end: datetime
    explanation_url: str | None = None
    """``explanationURL``: a page saying why the window is where it is (an operator's mass re-issuance)."""


DEFAULT_POLICY = RenewalPolicy()


def policy_for_lifetime(policy: RenewalPolicy, lifetime: timedelta) -> RenewalPolicy:
    """The policy a certificate of this lifetime is scheduled with under a profile's policy.

    A window at least as long as the lifetime would make every new version due the moment it is
    issued, and so renew it again on each scan: such a certificate renews by the lifetime fraction
    instead. Any other policy is returned unchanged.
    """
    if policy.window is not None and policy.window >= lifetime:
        return replace(policy, window=None)
    return policy


def unit_interval(certificate_id: str, salt: str = "renewal") -> float:
    """A stable number in [0, 1) derived from the certificate id (same input, same value, any process)."""
    digest = hashlib.sha256(f"{salt}:{certificate_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def renewal_due_at(
    *,
    not_before: datetime,
    not_after: datetime,
    policy: RenewalPolicy,
    certificate_id: str,
    suggested_window: SuggestedWindow | None = None,
) -> datetime | None:
    """The moment the certificate's renewal job should be created; None when it is not auto-renewed.

    With an ARI window the point is spread uniformly over the window (RFC 9773 §4.2 asks clients to pick
    a random time inside it; ours is deterministic per certificate). Otherwise the policy's base time is
    moved earlier by ``jitter_fraction * (notAfter - base) * u`` with ``u`` in [0, 1) from the id, and
    never before notBefore.
    """
    if not policy.auto_renew:
        return None
    if suggested_window is not None and suggested_window.end > suggested_window.start:
        span = suggested_window.end - suggested_window.start
        return suggested_window.start + span * unit_interval(certificate_id, "ari")
    lifetime = not_after - not_before
    if policy.window is not None:
        base = not_after - min(policy.window, lifetime)
    else:
        base = not_before + lifetime * policy.lifetime_fraction
    jitter = (not_after - base) * policy.jitter_fraction * unit_interval(certificate_id)
    return max(not_before, base - jitter)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff for failed jobs: ``base * 2**(attempt - 1)``, capped, up to ``max_attempts``."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 8

    def delay(self, attempt: int) -> timedelta:
        if attempt < 1:
            raise ValueError("attempts count from 1")
        exponent = min(attempt - 1, 32)
        return min(self.cap, self.base * (1 << exponent))

    def next_attempt_at(self, *, attempt: int, now: datetime) -> datetime | None:
        """When to try again after failed attempt number ``attempt``; None once attempts are used up."""
        if attempt >= self.max_attempts:
            return None
        return now + self.delay(attempt)


DEFAULT_BACKOFF = Backoff()


def next_attempt_at(attempt: int, now: datetime, backoff: Backoff = DEFAULT_BACKOFF) -> datetime | None:
    return backoff.next_attempt_at(attempt=attempt, now=now)
