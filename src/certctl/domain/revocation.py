"""Revocation reasons (RFC 5280 §5.3.1) and the schedule rules of published CRLs (RFC 5280 §5).

Pure values: the clock is passed in. The CRL builder (``certctl.pki.crl``) takes the numeric reason code;
the API and CLI speak the RFC's camelCase names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum


class RevocationReason(IntEnum):
    """CRLReason codes of RFC 5280 §5.3.1 (value 7 is unused by the RFC)."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    REMOVE_FROM_CRL = 8
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10

    @property
    def rfc_name(self) -> str:
        return _NAMES[self]

    @classmethod
    def from_name(cls, name: str) -> RevocationReason:
        """The reason for an RFC name (``keyCompromise``); ValueError names the accepted ones."""
        for reason, rfc_name in _NAMES.items():
            if rfc_name == name:
                return reason
        raise ValueError(f"unknown revocation reason {name!r}; use one of {', '.join(REVOKE_REASONS)}")


_NAMES: dict[RevocationReason, str] = {
    RevocationReason.UNSPECIFIED: "unspecified",
    RevocationReason.KEY_COMPROMISE: "keyCompromise",
    RevocationReason.CA_COMPROMISE: "cACompromise",
    RevocationReason.AFFILIATION_CHANGED: "affiliationChanged",
    RevocationReason.SUPERSEDED: "superseded",
    RevocationReason.CESSATION_OF_OPERATION: "cessationOfOperation",
    RevocationReason.CERTIFICATE_HOLD: "certificateHold",
    RevocationReason.REMOVE_FROM_CRL: "removeFromCRL",
    RevocationReason.PRIVILEGE_WITHDRAWN: "privilegeWithdrawn",
    RevocationReason.AA_COMPROMISE: "aACompromise",
}

REVOKE_REASONS: tuple[str, ...] = tuple(
    name
    for reason, name in _NAMES.items()
    if reason not in (RevocationReason.CERTIFICATE_HOLD, RevocationReason.REMOVE_FROM_CRL)
)
"""What an operator may ask for. Revocation here is final: certificateHold (reversible, §5.3.1) and
removeFromCRL (only meaningful in delta CRLs, to release a hold) are refused."""


def parse_revoke_reason(name: str) -> RevocationReason:
    """The reason an operator asked for, or ValueError with the accepted names."""
    if name not in REVOKE_REASONS:
        raise ValueError(f"unknown revocation reason {name!r}; use one of {', '.join(REVOKE_REASONS)}")
    return RevocationReason.from_name(name)


@dataclass(frozen=True)
class CrlSchedule:
    """How long CRLs are valid and when they are reissued.

    ``validity`` is nextUpdate - thisUpdate of full and delta CRLs (RFC 5280 §5.1.2.5). A CRL is reissued
    once it is older than half its validity, so relying parties never hold one past nextUpdate. The delta
    base (RFC 5280 §5.2.4) is rotated when it is older than ``validity``; ``delta_overlap`` widens a delta
    backwards so a revocation committed while its base was being built is never missed.
    """

    validity: timedelta = timedelta(hours=24)
    delta_overlap: timedelta = timedelta(minutes=10)
    keep_expired: bool = False

    def due(self, *, this_update: datetime, now: datetime) -> bool:
        return now - this_update >= self.validity / 2

    def base_due(self, *, base_this_update: datetime | None, now: datetime) -> bool:
        return base_this_update is None or now - base_this_update >= self.validity

    def listed_until(self, this_update: datetime) -> datetime | None:
        """Entries whose certificate expired before this instant leave the CRL (None: keep them all).

        RFC 5280 §5.1.2.6: an entry stays until it has appeared on one regularly scheduled CRL issued
        after the certificate's validity ended; one full validity period of grace guarantees that.
        """
        return None if self.keep_expired else this_update - self.validity

    def max_age_seconds(self, *, next_update: datetime, now: datetime, ceiling: int = 3600) -> int:
        """HTTP freshness for a served CRL: never past its nextUpdate, never more than ``ceiling``."""
        remaining = int((next_update - now).total_seconds())
        return max(0, min(ceiling, remaining))
