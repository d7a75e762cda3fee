"""Notification delivery: route events to channels as durable jobs, and carry one delivery out.

Each (event, channel) pair is one ``notification`` job whose dedup key is ``notify:<event key>:<channel>``,
so an event is delivered once per channel however often it is produced (every expiry threshold once per
certificate version, every audited action once). One job per channel isolates faults: a dead channel
fails, backs off and is dead-lettered (job ``failed``) on its own while the others deliver. A dead-lettered
delivery can be requeued through the API.
"""

from __future__ import annotations

import builtins
import secrets as random
from collections.abc import Callable, Sequence
from typing import Any

import httpx2
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.connectors.notifiers.base import DeliveryFailed
from certctl.domain.jobs import JobStatus, JobType
from certctl.domain.notifications import Event, EventType, Rule, Severity, delivery_dedup_key, route
from certctl.errors import CertctlError, Conflict, NotFound, ValidationFailed
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.services.jobs import new_job
from certctl.services.notification_config import NotificationConfigService, connector_for
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, jobs, notifications, rows
from certctl.store.repositories.jobs import JobQuery

DEFAULT_MAX_ATTEMPTS = 6
"""With the job backoff (30 s doubling) a dead channel is dead-lettered after about 15 minutes."""


class NotificationFailed(CertctlError):
    status = 502
    problem = "notification-failed"
    title = "The notification channel did not accept the message"


def rule_of(row: dict[str, Any]) -> Rule:
    return Rule(
        event_types=tuple(row["event_types"]),
        min_severity=Severity.parse(row["min_severity"]),
        channel_ids=tuple(row["channel_ids"]),
        team_id=row["team_id"],
        owner_id=row["owner_id"],
        created_at=row.get("created_at"),
    )


def default_http() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(follow_redirects=False)


class NotificationService:
    def __init__(
        self,
        context: ServiceContext,
        config: NotificationConfigService,
        *,
        http: Callable[[], httpx2.AsyncClient] = default_http,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        self._ctx = context
        self.config = config
        self._http = http
        self.max_attempts = max_attempts

    async def dispatch(self, connection: AsyncConnection, events: Sequence[Event]) -> int:
        """Enqueue one delivery job per routed (event, enabled channel); returns how many were new."""
        if not events:
            return 0
        rules = [rule_of(row) for row in await notifications.enabled_rules(connection)]
        routed = [(event, route(event, rules)) for event in events]
        wanted = sorted({channel for _, channels in routed for channel in channels})
        enabled = await notifications.enabled_channel_ids(connection, wanted)
        now = self._ctx.clock.now()
        records = [
            new_job(
                type=JobType.NOTIFICATION,
                dedup_key=delivery_dedup_key(event.key, channel_id),
                now=now,
                max_attempts=self.max_attempts,
                certificate_id=event.certificate_id,
                payload={"channel_id": channel_id, "event": event.to_payload()},
            )
            for event, channels in routed
            for channel_id in channels
            if channel_id in enabled
        ]
        return len(await jobs.enqueue(connection, records))

    async def emit(self, events: Sequence[Event]) -> int:
        async with unit_of_work(self._ctx.engine) as uow:
            return await self.dispatch(uow.connection, events)

    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """The ``notification`` job handler: deliver the job's event to its channel once."""
        channel_id = job["payload"]["channel_id"]
        async with read_only(self._ctx.engine) as connection:
            channel = await rows.get(connection, notifications.CHANNELS, channel_id)
        if channel is None:
            return {"outcome": "skipped", "reason": "the channel was deleted"}
        if not channel["enabled"]:
            return {"outcome": "skipped", "reason": "the channel is disabled"}
        event = Event.from_payload(job["payload"]["event"])
        return {"outcome": "delivered", "channel": channel["name"]} | await self._deliver(channel, event)

    async def test(self, *, ref: str, actor: Actor, request: RequestInfo | None = None) -> dict[str, Any]:
        """Send a test message now (not queued) and say what the channel answered."""
        channel = await self.config.channel_row(ref)
        now = self._ctx.clock.now()
        event = Event(
            type=EventType.TEST,
            severity=Severity.INFO,
            key=f"test:{random.token_hex(8)}",
            title="certctl test notification",
            summary=f"Channel {channel['name']!r} is set up; {actor.name} asked for this test.",
            occurred_at=now,
        )
        try:
            result = await self._deliver(channel, event)
        except NotificationFailed as exc:
            return {"delivered": False, "error": exc.message}
        finally:
            await self._audit_test(channel, actor, request)
        return {"delivered": True, "result": result}

    async def deliveries(
        self, *, status: str | None, cursor: str | None, limit: int
    ) -> tuple[builtins.list[dict[str, Any]], str | None]:
        if status is not None and status not in {str(s) for s in JobStatus}:
            raise ValidationFailed(f"unknown status {status!r}; choose from {', '.join(JobStatus)}")
        query = JobQuery(type=str(JobType.NOTIFICATION), status=status, cursor=cursor, limit=limit)
        async with read_only(self._ctx.engine) as connection:
            found, next_cursor = await jobs.list_jobs(connection, query)
        return [delivery_view(job) for job in found], next_cursor

    async def requeue(
        self, *, job_id: str, actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        """A dead-lettered (failed) or cancelled delivery runs again with fresh attempts."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            requeued = await notifications.requeue(uow.connection, job_id=job_id, now=now)
            if requeued is None:
                existing = await jobs.get(uow.connection, job_id)
                if existing is None or existing["type"] != JobType.NOTIFICATION:
                    raise NotFound(f"delivery {job_id!r} does not exist")
                raise Conflict(f"delivery {job_id!r} is {existing['status']}; only failed ones are requeued")
            record = audit_record(
                actor=actor,
                action="notification.requeue",
                resource_type="job",
                resource_id=job_id,
                at=now,
                request=request,
                details={"channel_id": requeued["payload"]["channel_id"]},
            )
            await audit.append(uow.connection, [record])
        return delivery_view(requeued)

    async def _deliver(self, channel: dict[str, Any], event: Event) -> dict[str, Any]:
        connector = connector_for(self._ctx.master_key, channel)
        try:
            async with self._http() as http:
                return await connector.deliver(event, http=http, now=self._ctx.clock.now())
        except DeliveryFailed as exc:
            raise NotificationFailed(f"{channel['type']} channel {channel['name']!r}: {exc}") from None

    async def _audit_test(self, channel: dict[str, Any], actor: Actor, request: RequestInfo | None) -> None:
        record = audit_record(
            actor=actor,
            action="notification.channel.test",
            resource_type="notification",
            resource_id=channel["id"],
            at=self._ctx.clock.now(),
            request=request,
            details={"name": channel["name"], "type": channel["type"]},
        )
        async with unit_of_work(self._ctx.engine) as uow:
            await audit.append(uow.connection, [record])


def delivery_view(job: dict[str, Any]) -> dict[str, Any]:
    event = job["payload"].get("event", {})
    return {
        "id": job["id"],
        "status": job["status"],
        "channel_id": job["payload"].get("channel_id"),
        "event_type": event.get("type"),
        "event_key": event.get("key"),
        "severity": event.get("severity"),
        "title": event.get("title"),
        "certificate_id": job["certificate_id"],
        "attempts": job["attempts"],
        "max_attempts": job["max_attempts"],
        "run_after": job["run_after"],
        "last_error": job["last_error"],
        "result": job["result"],
        "created_at": job["created_at"],
        "updated_at": job["updated_at"],
    }
