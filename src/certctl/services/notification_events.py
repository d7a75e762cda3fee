"""Where notification events come from, run by the scheduler leader on each tick.

- **Audited actions** (renewed, renewal failed for good, revoked, blocked by policy, approval requested)
  are read back from the audit trail, which each of those use cases writes in its own transaction: the
  trail is the outbox, so an event is never lost between a commit and a send. A cursor plus an overlap
  window covers transactions that commit late; the job dedup key (the audit event id) drops repeats.
- **Expiry thresholds** (default 30, 14, 7, 0 days, or the certificate's profile's own
  ``expiry_thresholds_days``): the tightest threshold a live certificate's current version is within,
  once per (version, threshold).
- **The daily digest** at ``digest_hour`` UTC: what expires within 14 days, what failed, what changed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.lifecycle import CertificateStatus
from certctl.domain.notifications import (
    AUDIT_EVENTS,
    BREAKGLASS_TITLES,
    DEFAULT_THRESHOLDS,
    Event,
    EventType,
    Severity,
    crossed_threshold,
    expiry_severity,
)
from certctl.services.context import ServiceContext
from certctl.services.notifications import NotificationService
from certctl.services.profiles import profile_thresholds
from certctl.store.db import unit_of_work
from certctl.store.repositories import notifications, rows

AUDIT_OVERLAP = timedelta(minutes=2)
FIRST_LOOKBACK = timedelta(minutes=10)
AUDIT_PAGE = 1000
EXPIRY_PAGE = 5000
DIGEST_WINDOW = timedelta(days=14)


@dataclass(frozen=True)
class NotificationSchedule:
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    """Expiry thresholds of certificates whose profile does not set its own."""
    expiry_interval: timedelta = timedelta(minutes=5)
    digest_hour: int = 7
    """UTC hour after which the day's digest goes out (once a day)."""


def audit_event(row: dict[str, Any], certificate: dict[str, Any] | None) -> Event:
    kind, severity = AUDIT_EVENTS[row["action"]]
    details = dict(row["details"] or {})
    name = (certificate or {}).get("name") or details.get("name") or row["resource_id"]
    titles = {
        EventType.RENEWED: f"Certificate {name} renewed",
        EventType.RENEWAL_FAILED: f"Renewal of {name} failed",
        EventType.REVOKED: f"Certificate {name} revoked",
        EventType.POLICY_BLOCKED: f"Policy blocked a certificate request for {name}",
        EventType.APPROVAL_REQUESTED: f"Approval requested: {details.get('summary') or name}",
        EventType.DEPLOYED: f"Certificate {name} deployed to {details.get('target', 'a target')}",
        EventType.DEPLOYMENT_FAILED: f"Deployment of {name} to {details.get('target', 'a target')} failed",
        EventType.BREAKGLASS: f"Break-glass account {details.get('username', name)} "
        f"{BREAKGLASS_TITLES.get(row['action'], 'used')}",
    }
    summary = "; ".join(f"{k}: {v}" for k, v in details.items() if isinstance(v, str | int | float))
    return Event(
        type=kind,
        severity=severity,
        key=f"audit:{row['event_id']}",
        title=titles[kind],
        summary=f"by {row['actor']}. {summary}".strip(),
        occurred_at=row["occurred_at"],
        certificate_id=certificate["id"] if certificate else None,
        team_id=(certificate or {}).get("team_id"),
        owner_id=(certificate or {}).get("owner_id"),
        details=details,
    )


def expiry_event(certificate: dict[str, Any], days: int, now: datetime) -> Event:
    not_after: datetime = certificate["not_after"]
    days_left = math.ceil((not_after - now) / timedelta(days=1))
    left = "has expired" if not_after <= now else f"expires in {days_left} day{'s' * (days_left != 1)}"
    return Event(
        type=EventType.EXPIRING,
        severity=expiry_severity(days),
        key=f"expiry:{certificate['id']}:{certificate['current_version_id']}:{days}",
        title=f"Certificate {certificate['name']} {left}",
        summary=f"{certificate['name']} is valid until {not_after:%Y-%m-%d %H:%M} UTC.",
        occurred_at=now,
        certificate_id=certificate["id"],
        team_id=certificate["team_id"],
        owner_id=certificate["owner_id"],
        details={"threshold_days": days, "not_after": not_after.isoformat(), "status": certificate["status"]},
    )


class NotificationProducer:
    def __init__(
        self,
        context: ServiceContext,
        notifications_service: NotificationService,
        schedule: NotificationSchedule,
    ) -> None:
        self._ctx = context
        self._service = notifications_service
        self.schedule = schedule

    async def tick(self, *, now: datetime) -> int:
        """Everything due at ``now``; returns how many deliveries were enqueued. Idempotent."""
        created = await self.scan_audit(now=now)
        async with unit_of_work(self._ctx.engine) as uow:
            last = await notifications.cursor(uow.connection, "expiry")
        if last is None or now - last >= self.schedule.expiry_interval:
            created += await self.scan_expiry(now=now)
        created += await self.send_digest(now=now)
        return created

    async def scan_audit(self, *, now: datetime) -> int:
        created = 0
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            since = await notifications.cursor(connection, "audit")
            start = since - AUDIT_OVERLAP if since is not None else now - FIRST_LOOKBACK
            after: tuple[datetime, int] | None = None
            while True:
                page = await notifications.audit_events_between(
                    connection,
                    actions=sorted(AUDIT_EVENTS),
                    since=start,
                    until=now,
                    after=after,
                    limit=AUDIT_PAGE,
                )
                ids = [r["resource_id"] for r in page if r["resource_type"] == "certificate"]
                certificates = await notifications.certificates_by_ids(connection, ids)
                events = [audit_event(r, certificates.get(r["resource_id"])) for r in page]
                created += await self._service.dispatch(connection, events)
                if len(page) < AUDIT_PAGE:
                    break
                after = (page[-1]["occurred_at"], page[-1]["id"])
            await notifications.move_cursor(connection, "audit", now)
        return created

    async def scan_expiry(self, *, now: datetime) -> int:
        """Warn about each live certificate at the thresholds of its profile (or the schedule's)."""
        async with unit_of_work(self._ctx.engine) as uow:
            by_profile = await self._profile_thresholds(uow.connection)
            widest = max((max(days, default=0) for days in by_profile.values()), default=0)
            horizon = now + timedelta(days=max(widest, *self.schedule.thresholds, 0))
            found = await notifications.expiring(
                uow.connection, not_before=now - timedelta(days=2), horizon=horizon, limit=EXPIRY_PAGE
            )
            events = []
            for certificate in found:
                thresholds = by_profile.get(certificate["profile_id"], self.schedule.thresholds)
                days = crossed_threshold(not_after=certificate["not_after"], now=now, thresholds=thresholds)
                if days is not None:
                    events.append(expiry_event(certificate, days, now))
            created = await self._service.dispatch(uow.connection, events)
            await notifications.move_cursor(uow.connection, "expiry", now)
        return created

    async def _profile_thresholds(self, connection: AsyncConnection) -> Mapping[str, tuple[int, ...]]:
        """Profile id -> its own expiry thresholds, for the profiles that set them (few rows, read whole)."""
        found: dict[str, tuple[int, ...]] = {}
        for row in await rows.list_all(connection, rows.PROFILES):
            days = profile_thresholds(row)
            if days is not None:
                found[str(row["id"])] = days
        return found

    async def send_digest(self, *, now: datetime, force: bool = False) -> int:
        """Once a day after ``digest_hour``: a summary to the channels whose rules name ``digest``."""
        day_start = datetime.combine(now.date(), time(self.schedule.digest_hour), tzinfo=now.tzinfo)
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            last = await notifications.cursor(connection, "digest")
            if not force and (now < day_start or (last is not None and last >= day_start)):
                return 0
            event = await self._digest(connection, now)
            created = await self._service.dispatch(connection, [event])
            await notifications.move_cursor(connection, "digest", now)
        return created

    async def _digest(self, connection: AsyncConnection, now: datetime) -> Event:
        soon = await notifications.expiring(
            connection, not_before=now, horizon=now + DIGEST_WINDOW, limit=200
        )
        failed = await notifications.certificates_in_status(connection, str(CertificateStatus.FAILED), 200)
        changes = await notifications.audit_counts(connection, since=now - timedelta(days=1), until=now)
        lines = [f"Expiring within {DIGEST_WINDOW.days} days: {len(soon)}"]
        lines += [f"  - {c['name']}: {c['not_after'].date().isoformat()}" for c in soon]
        lines.append(f"Failed renewals: {len(failed)}")
        lines += [f"  - {c['name']}" for c in failed]
        lines.append("Changes in the last 24 hours:")
        lines += [f"  - {action}: {n}" for action, n in sorted(Counter(changes).items())]
        return Event(
            type=EventType.DIGEST,
            severity=Severity.CRITICAL if failed else Severity.INFO,
            key=f"digest:{now.date().isoformat()}",
            title=f"certctl daily digest {now.date().isoformat()}",
            summary="\n".join(lines),
            occurred_at=now,
            details={"expiring": len(soon), "failed": len(failed), "changes": sum(changes.values())},
        )
