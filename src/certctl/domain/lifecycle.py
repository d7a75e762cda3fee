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
    *,
    not_after: datetime,
    now: datetime,
    expiring_within: timedelta,
    renewal_due_at: datetime | None = None,
) -> CertificateStatus:
    """Active, Expiring or Expired from the current version's notAfter.

    Expiring means "inside the expiry threshold *and* due for renewal": a 7-day certificate is not
    Expiring for its whole life just because the threshold is 30 days; it becomes Expiring when its
    renewal falls due (2/3 of its lifetime by default).
    """
    if not_after <= now:
        return CertificateStatus.EXPIRED
    due = renewal_due_at is None or renewal_due_at <= now
    if not_after - now <= expiring_within and due:
        return CertificateStatus.EXPIRING
    return CertificateStatus.ACTIVE
