"""Routing, expiry thresholds and webhook signatures (pure rules, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certctl.domain.notifications import (
    DEFAULT_THRESHOLDS,
    Event,
    EventType,
    Rule,
    Severity,
    crossed_threshold,
    route,
    sign_webhook,
    verify_webhook,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def event(
    kind: EventType = EventType.EXPIRING, severity: Severity = Severity.WARNING, team_id: str | None = None
) -> Event:
    return Event(
        type=kind, severity=severity, key="k", title="t", summary="s", occurred_at=NOW, team_id=team_id
    )


def test_rules_route_by_type_severity_and_team() -> None:
    rules = [
        Rule(event_types=(), min_severity=Severity.INFO, channel_ids=("all",)),
        Rule(event_types=("certificate.expiring",), min_severity=Severity.CRITICAL, channel_ids=("pager",)),
        Rule(event_types=("digest",), min_severity=Severity.INFO, channel_ids=("mail",)),
        Rule(event_types=(), min_severity=Severity.INFO, channel_ids=("team-a",), team_id="team_a"),
    ]
    assert route(event(), rules) == ["all"]
    assert route(event(severity=Severity.CRITICAL), rules) == ["all", "pager"]
    assert route(event(EventType.DIGEST, Severity.INFO), rules) == ["mail"], "digest only where named"
    assert route(event(team_id="team_a"), rules) == ["all", "team-a"]


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (timedelta(days=31), None),
        (timedelta(days=30), 30),
        (timedelta(days=20), 30),
        (timedelta(days=14), 14),
        (timedelta(days=5), 7),
        (timedelta(0), 0),
        (timedelta(days=-1), 0),
    ],
)
def test_the_tightest_threshold_reached_is_reported(left: timedelta, expected: int | None) -> None:
    assert crossed_threshold(not_after=NOW + left, now=NOW, thresholds=DEFAULT_THRESHOLDS) == expected


def test_webhook_signature_verifies_and_rejects_replays_and_tampering() -> None:
    body, secret, stamp = b'{"type":"test"}', b"k" * 32, int(NOW.timestamp())
    signature = "v1=" + sign_webhook(secret=secret, timestamp=stamp, body=body)
    assert verify_webhook(secret=secret, timestamp=str(stamp), signature=signature, body=body, now=NOW)
    later = NOW + timedelta(minutes=6)
    assert not verify_webhook(secret=secret, timestamp=str(stamp), signature=signature, body=body, now=later)
    assert not verify_webhook(
        secret=secret, timestamp=str(stamp), signature=signature, body=body + b" ", now=NOW
    )
    assert not verify_webhook(secret=b"other", timestamp=str(stamp), signature=signature, body=body, now=NOW)
    assert not verify_webhook(secret=secret, timestamp="soon", signature=signature, body=body, now=NOW)


def test_rules_are_not_retroactive() -> None:
    """The audit scan re-reads a short overlap: a rule made a moment ago must not get older events."""
    before = Rule(
        event_types=(), min_severity=Severity.INFO, channel_ids=("old",), created_at=NOW - timedelta(hours=1)
    )
    after = Rule(
        event_types=(),
        min_severity=Severity.INFO,
        channel_ids=("new",),
        created_at=NOW + timedelta(seconds=1),
    )
    assert route(event(), [before, after]) == ["old"]
    assert route(event(kind=EventType.DEPLOYMENT_FAILED, severity=Severity.CRITICAL), [after]) == []
