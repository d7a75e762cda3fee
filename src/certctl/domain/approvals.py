"""Four-eyes approval: the kinds of request that can be held, their states, and the rules of deciding.

A request is *pending* until a different actor approves or rejects it, or until it expires. Approving
carries the request out: it ends *approved* when that worked and *failed* when it did not (for instance
the certificate name was taken meanwhile). Pure rules only; the services apply them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum


class ApprovalKind(StrEnum):
    ISSUE = "certificate.issue"
    RENEW = "certificate.renew"
    PROFILE_UPDATE = "profile.update"
    PROFILE_DELETE = "profile.delete"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"


DEFAULT_TTL = timedelta(hours=72)


def expiry_of(created_at: datetime, ttl: timedelta) -> datetime:
    """When a request made at ``created_at`` stops being decidable."""
    if ttl <= timedelta(0):
        raise ValueError("the approval lifetime must be positive")
    return created_at + ttl


def is_expired(expires_at: datetime, now: datetime) -> bool:
    return expires_at <= now


def is_self_decision(*, requested_by_id: str, decided_by_id: str) -> bool:
    """Four eyes means two principals: the requester never approves its own request."""
    return requested_by_id == decided_by_id


def refusal_for_state(status: str) -> str | None:
    """Why a request in ``status`` cannot be decided any more (None while it is pending)."""
    if status == ApprovalStatus.PENDING:
        return None
    if status == ApprovalStatus.EXPIRED:
        return "it expired before anyone decided"
    if status == ApprovalStatus.REJECTED:
        return "it was already rejected"
    return f"it was already decided ({status})"
