"""Managed-certificate lifecycle states and the rules that derive them."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum


class CertificateStatus(StrEnum):
    PENDING = "Pending"
    ACTIVE = "Active"
    EXPIRING = "Expiring"
    EXPIRED = "Expired"
    RENEWAL_IN_PROGRESS = "RenewalInProgress"
    FAILED = "Failed"
    REVOKED = "Revoked"
    ARCHIVED = "Archived"


class CertificateSource(StrEnum):
    API = "api"
    CLI = "cli"
    DEMO = "demo"
    ACME = "acme"
    SCEP = "scep"
    EST = "est"
    DISCOVERY = "discovery"
    IMPORT = "import"


class CaStatus(StrEnum):
    """An issuing CA is drained (no new issuance) before it is retired (RFC 5280 keeps its certs valid)."""

    ACTIVE = "active"
    DRAINING = "draining"
    RETIRED = "retired"


STICKY_STATUSES = frozenset(
    {
        CertificateStatus.REVOKED,
        CertificateStatus.ARCHIVED,
        CertificateStatus.FAILED,
        CertificateStatus.PENDING,
    }
)


def status_for_validity(
    *, not_after: datetime, now: datetime, expiring_within: timedelta
) -> CertificateStatus:
    """Active, Expiring or Expired from the current version's notAfter."""
    if not_after <= now:
        return CertificateStatus.EXPIRED
    if not_after - now <= expiring_within:
        return CertificateStatus.EXPIRING
    return CertificateStatus.ACTIVE
