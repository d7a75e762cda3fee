"""Incident tools: PagerDuty Events API v2 and OpsGenie alerts.

Both key an alert on the certificate (``certctl:<certificate id>``), so a renewal that succeeds resolves
(PagerDuty ``event_action: resolve``) or closes (OpsGenie) the alert its expiry or failure opened.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx2
from pydantic import Field

from certctl.connectors.notifiers.base import NotifierConnector, NotifierOptions, NotifierSecrets, post_json
from certctl.domain.notifications import Event, EventType, Severity

URL_PATTERN = r"^https?://"
PAGERDUTY_SEVERITY = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.CRITICAL: "critical"}
OPSGENIE_PRIORITY = {Severity.INFO: "P5", Severity.WARNING: "P3", Severity.CRITICAL: "P1"}


def alert_key(event: Event) -> str:
    return f"certctl:{event.certificate_id}" if event.certificate_id else f"certctl:{event.key}"


def resolves(event: Event) -> bool:
    return event.type is EventType.RENEWED and event.certificate_id is not None


class PagerDutyOptions(NotifierOptions):
    url: str = Field(default="https://events.pagerduty.com/v2/enqueue", pattern=URL_PATTERN, max_length=500)
    source: str = Field(default="certctl", max_length=200)


class PagerDutySecrets(NotifierSecrets):
    routing_key: str = Field(min_length=1, max_length=200, description="Events API v2 integration key")


class PagerDutyNotifier(NotifierConnector):
    type_name: ClassVar[str] = "pagerduty"
    options_model: ClassVar[type[NotifierOptions]] = PagerDutyOptions
    secrets_model: ClassVar[type[NotifierSecrets]] = PagerDutySecrets

    def message(self, event: Event, routing_key: str) -> dict[str, Any]:
        assert isinstance(self.options, PagerDutyOptions)
        body: dict[str, Any] = {"routing_key": routing_key, "dedup_key": alert_key(event)}
        if resolves(event):
            return body | {"event_action": "resolve"}
        payload = {
            "summary": f"{event.title}: {event.summary}"[:1024],
            "source": self.options.source,
            "severity": PAGERDUTY_SEVERITY[event.severity],
            "timestamp": event.occurred_at.isoformat(),
            "component": event.certificate_id or "",
            "class": str(event.type),
            "custom_details": event.details,
        }
        return body | {"event_action": "trigger", "payload": payload}

    async def deliver(self, event: Event, *, http: httpx2.AsyncClient, now: datetime) -> dict[str, Any]:
        assert isinstance(self.secrets, PagerDutySecrets) and isinstance(self.options, PagerDutyOptions)
        response = await post_json(http, self.options.url, self.message(event, self.secrets.routing_key))
        return {"status": response.status_code, "dedup_key": alert_key(event)}


class OpsGenieOptions(NotifierOptions):
    url: str = Field(default="https://api.opsgenie.com/v2/alerts", pattern=URL_PATTERN, max_length=500)
    tags: tuple[str, ...] = Field(default=("certctl",), max_length=20)


class OpsGenieSecrets(NotifierSecrets):
    api_key: str = Field(min_length=1, max_length=200, description="API integration key (GenieKey)")


class OpsGenieNotifier(NotifierConnector):
    type_name: ClassVar[str] = "opsgenie"
    options_model: ClassVar[type[NotifierOptions]] = OpsGenieOptions
    secrets_model: ClassVar[type[NotifierSecrets]] = OpsGenieSecrets

    def message(self, event: Event) -> dict[str, Any]:
        assert isinstance(self.options, OpsGenieOptions)
        return {
            "message": event.title[:130],
            "alias": alert_key(event)[:512],
            "description": event.summary[:15000],
            "priority": OPSGENIE_PRIORITY[event.severity],
            "source": "certctl",
            "tags": list(self.options.tags),
            "details": {key: str(value)[:8000] for key, value in event.details.items()},
        }

    async def deliver(self, event: Event, *, http: httpx2.AsyncClient, now: datetime) -> dict[str, Any]:
        assert isinstance(self.secrets, OpsGenieSecrets) and isinstance(self.options, OpsGenieOptions)
        headers = {"Authorization": f"GenieKey {self.secrets.api_key}"}
        if resolves(event):
            url = f"{self.options.url.rstrip('/')}/{quote(alert_key(event), safe='')}/close"
            close = {"source": "certctl", "note": event.summary[:25000]}
            response = await post_json(http, f"{url}?identifierType=alias", close, headers=headers)
        else:
            response = await post_json(http, self.options.url, self.message(event), headers=headers)
        return {"status": response.status_code, "alias": alert_key(event)}
