"""Notification events, severities, expiry thresholds, routing rules and webhook signatures.

Pure values and rules: time is passed in. An event is routed by the rules that name its type (or every
type), whose minimum severity it reaches, and whose team / owner filter (when set) it matches; it goes to
the union of those rules' channels, one delivery per channel.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import IntEnum, StrEnum
from typing import Any

DEFAULT_THRESHOLDS: tuple[int, ...] = (30, 14, 7, 0)
"""Days before notAfter at which an expiry warning goes out, once each per certificate version."""
SIGNATURE_TOLERANCE = timedelta(minutes=5)
"""How old a signed webhook's timestamp may be before a receiver rejects it as a replay."""


class EventType(StrEnum):
    EXPIRING = "certificate.expiring"
    RENEWED = "certificate.renewed"
    RENEWAL_FAILED = "certificate.renewal_failed"
    REVOKED = "certificate.revoked"
    POLICY_BLOCKED = "policy.blocked"
    APPROVAL_REQUESTED = "approval.requested"
    DEPLOYED = "deployment.succeeded"
    DEPLOYMENT_FAILED = "deployment.failed"
    BREAKGLASS = "breakglass.used"
    DIGEST = "digest"
    TEST = "test"


class Severity(IntEnum):
    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, name: str) -> Severity:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {name!r}; choose from info, warning, critical") from None

    @property
    def label(self) -> str:
        return self.name.lower()


AUDIT_EVENTS: dict[str, tuple[EventType, Severity]] = {
    "certificate.renew": (EventType.RENEWED, Severity.INFO),
    "certificate.renewal_failed": (EventType.RENEWAL_FAILED, Severity.CRITICAL),
    "certificate.revoke": (EventType.REVOKED, Severity.WARNING),
    "policy.blocked": (EventType.POLICY_BLOCKED, Severity.WARNING),
    "approval.request": (EventType.APPROVAL_REQUESTED, Severity.INFO),
    "deployment.succeeded": (EventType.DEPLOYED, Severity.INFO),
    "deployment.failed": (EventType.DEPLOYMENT_FAILED, Severity.CRITICAL),
    "breakglass.login": (EventType.BREAKGLASS, Severity.CRITICAL),
    "breakglass.locked": (EventType.BREAKGLASS, Severity.CRITICAL),
}
"""Audit actions that become notification events, with the event type and severity each one gets."""
BREAKGLASS_TITLES = {
    "breakglass.login": "signed in",
    "breakglass.locked": "locked after repeated failed sign-ins",
}
"""How a ``breakglass.used`` title words each audited use of the emergency account."""


@dataclass(frozen=True)
class Event:
    """One thing worth telling someone about; ``key`` identifies it for deduplication."""

    type: EventType
    severity: Severity
    key: str
    title: str
    summary: str
    occurred_at: datetime
    certificate_id: str | None = None
    team_id: str | None = None
    owner_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        return {
            "type": str(self.type),
            "severity": self.severity.label,
            "key": self.key,
            "title": self.title,
            "summary": self.summary,
            "occurred_at": self.occurred_at.isoformat(),
            "certificate_id": self.certificate_id,
            "team_id": self.team_id,
            "owner_id": self.owner_id,
            "details": self.details,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Event:
        return cls(
            type=EventType(payload["type"]),
            severity=Severity.parse(payload["severity"]),
            key=payload["key"],
            title=payload["title"],
            summary=payload["summary"],
            occurred_at=datetime.fromisoformat(payload["occurred_at"]),
            certificate_id=payload.get("certificate_id"),
            team_id=payload.get("team_id"),
            owner_id=payload.get("owner_id"),
            details=dict(payload.get("details") or {}),
        )


@dataclass(frozen=True)
class Rule:
    event_types: tuple[str, ...]
    """Empty: every event type except ``digest`` (which a rule must name to receive)."""
    min_severity: Severity
    channel_ids: tuple[str, ...]
    team_id: str | None = None
    owner_id: str | None = None
    created_at: datetime | None = None
    """A rule is not retroactive: events that happened before it existed are not routed to it (the
    audit scan re-reads a short overlap, which would otherwise reach rules made a moment ago)."""

    def matches(self, event: Event) -> bool:
        if self.created_at is not None and event.occurred_at < self.created_at:
            return False
        if self.event_types:
            if str(event.type) not in self.event_types:
                return False
        elif event.type is EventType.DIGEST:
            return False
        if event.severity < self.min_severity:
            return False
        if self.team_id is not None and event.team_id != self.team_id:
            return False
        return self.owner_id is None or event.owner_id == self.owner_id


def route(event: Event, rules: Iterable[Rule]) -> list[str]:
    """The channels an event goes to (each once, in a stable order)."""
    channels: set[str] = set()
    for rule in rules:
        if rule.matches(event):
            channels.update(rule.channel_ids)
    return sorted(channels)


def crossed_threshold(*, not_after: datetime, now: datetime, thresholds: Sequence[int]) -> int | None:
    """The tightest threshold (in days) the certificate is within, or None when none is reached yet.

    Only the tightest is reported, so a certificate first seen 5 days before expiry warns once (7 days),
    not three times (30, 14, 7); each later, tighter threshold then warns once more.
    """
    left = not_after - now
    reached = [days for days in thresholds if left <= timedelta(days=days)]
    return min(reached) if reached else None


def expiry_severity(days: int) -> Severity:
    if days <= 7:
        return Severity.CRITICAL
    return Severity.WARNING if days <= 14 else Severity.INFO


def delivery_dedup_key(event_key: str, channel_id: str) -> str:
    """One delivery job per event and channel, ever (the job queue refuses a second)."""
    return f"notify:{event_key}:{channel_id}"[:200]


def sign_webhook(*, secret: bytes, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 over ``timestamp + "." + body``, hex, as sent in ``X-Certctl-Signature: v1=<hex>``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify_webhook(*, secret: bytes, timestamp: str, signature: str, body: bytes, now: datetime) -> bool:
    """What a receiver does: the signature matches (constant time) and the timestamp is recent."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now.timestamp() - sent_at) > SIGNATURE_TOLERANCE.total_seconds():
        return False
    expected = "v1=" + sign_webhook(secret=secret, timestamp=sent_at, body=body)
    return hmac.compare_digest(expected, signature)
