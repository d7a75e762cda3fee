"""The dashboard's notifications page: channels with their last delivery, dead letters, recent deliveries.

It shows what ``GET /api/v1/notifications/channels`` and ``.../deliveries`` show and needs the same
``notification.read`` (besides ``cert.read``). Channel secrets are never read for it: the service lists
only their names. A dead-lettered delivery (``failed``: its attempts are used up) has a Requeue button
that posts a form with the session's CSRF token and needs ``notification.edit``, like
``POST /api/v1/notifications/deliveries/{id}/requeue``; the requeue is audited as ``notification.requeue``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.responses import Response

from certctl.domain.jobs import JobStatus
from certctl.errors import Conflict, NotFound, ValidationFailed
from certctl.web.jobs import STATUS_CLASSES
from certctl.web.pages import MAX_CURSOR, relative_days

if TYPE_CHECKING:
    from certctl.web.routes import Dashboard

READ = "notification.read"
EDIT = "notification.edit"
RECENT_SHOWN = 50
DEAD_SHOWN = 100
LAST_DELIVERY_WINDOW = 500
"""A channel's last delivery is looked for among this many newest deliveries (one query, no per-channel
scan); a channel quiet for longer shows none."""


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    status: str
    status_class: str
    channel_id: str
    event_type: str
    severity: str
    title: str
    certificate_id: str
    attempts: int
    max_attempts: int
    run_after: datetime
    updated_at: datetime
    last_error: str

    @classmethod
    def of(cls, view: Mapping[str, Any]) -> DeliveryRow:
        status = str(view["status"])
        return cls(
            id=str(view["id"]),
            status=status,
            status_class=STATUS_CLASSES.get(status, "status-unknown"),
            channel_id=str(view.get("channel_id") or ""),
            event_type=str(view.get("event_type") or ""),
            severity=str(view.get("severity") or ""),
            title=str(view.get("title") or ""),
            certificate_id=str(view.get("certificate_id") or ""),
            attempts=int(view["attempts"]),
            max_attempts=int(view["max_attempts"]),
            run_after=view["run_after"],
            updated_at=view["updated_at"],
            last_error=str(view.get("last_error") or ""),
        )


@dataclass(frozen=True)
class ChannelRow:
    id: str
    name: str
    type: str
    enabled: bool
    last: DeliveryRow | None


def channel_rows(
    channels: Iterable[Mapping[str, Any]], deliveries: Iterable[DeliveryRow]
) -> list[ChannelRow]:
    """Each channel with its newest delivery among ``deliveries`` (which come newest first)."""
    newest: dict[str, DeliveryRow] = {}
    for delivery in deliveries:
        newest.setdefault(delivery.channel_id, delivery)
    return [
        ChannelRow(
            id=str(c["id"]),
            name=str(c["name"]),
            type=str(c["type"]),
            enabled=bool(c["enabled"]),
            last=newest.get(str(c["id"])),
        )
        for c in channels
    ]


class NotificationsPage:
    """``GET /notifications`` and ``POST /notifications/deliveries/{id}/requeue``."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def show(self, request: Request) -> Response:
        dashboard = self.dashboard
        purpose = "to see notification channels and deliveries"
        session = await dashboard.require_permission(request, READ, purpose=purpose)
        if isinstance(session, Response):
            return session
        service = dashboard.services.notifications
        cursor = request.query_params.get("cursor", "")[:MAX_CURSOR]
        notice = None
        try:
            recent, next_cursor = await service.deliveries(
                status=None, cursor=cursor or None, limit=RECENT_SHOWN
            )
        except ValidationFailed:
            notice = "That page link is no longer valid; showing the newest deliveries."
            cursor = ""
            recent, next_cursor = await service.deliveries(status=None, cursor=None, limit=RECENT_SHOWN)
        window, _ = await service.deliveries(status=None, cursor=None, limit=LAST_DELIVERY_WINDOW)
        dead, _ = await service.deliveries(status=str(JobStatus.FAILED), cursor=None, limit=DEAD_SHOWN)
        channels = await dashboard.services.notification_config.list_channels()
        rows = channel_rows(channels, (DeliveryRow.of(v) for v in window))
        return await dashboard.render(
            request,
            "notifications.html",
            session=session,
            title="Notifications",
            section="notifications",
            channels=rows,
            channel_names={row.id: row.name for row in rows},
            dead=[DeliveryRow.of(v) for v in dead],
            recent=[DeliveryRow.of(v) for v in recent],
            cursor=cursor,
            next_cursor=next_cursor,
            notice=notice,
            can_requeue=session.can(EDIT),
            relative=relative_days,
        )

    async def requeue(self, request: Request, job_id: str) -> Response:
        dashboard = self.dashboard
        purpose = "to requeue notification deliveries"
        session = await dashboard.require_action(request, EDIT, purpose=purpose, back="/notifications")
        if isinstance(session, Response):
            return session
        try:
            await dashboard.services.notifications.requeue(
                job_id=job_id, actor=session.actor, request=dashboard.audit_info(request)
            )
        except NotFound:
            message = f"There is no delivery {job_id!r}."
            return await dashboard.error(request, session, 404, "Not found", message)
        except Conflict as exc:
            return await dashboard.error(request, session, 409, "Cannot requeue", exc.message)
        return dashboard.see_other("/notifications")
