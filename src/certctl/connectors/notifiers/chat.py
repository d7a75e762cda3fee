"""Chat channels: Slack incoming webhooks (Block Kit) and Microsoft Teams Workflows webhooks (an
Adaptive Card 1.4 in a ``message`` attachment). The webhook URL carries the token, so it is a secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import httpx2
from pydantic import Field

from certctl.connectors.notifiers.base import NotifierConnector, NotifierOptions, NotifierSecrets, post_json
from certctl.domain.notifications import Event

URL_PATTERN = r"^https?://"


class WebhookUrlSecrets(NotifierSecrets):
    webhook_url: str = Field(pattern=URL_PATTERN, max_length=2000, description="Incoming webhook URL")


class ChatOptions(NotifierOptions):
    mention: str = Field(default="", max_length=200, description="Text prepended to critical events")


def facts(event: Event) -> list[tuple[str, str]]:
    shown = [("Severity", event.severity.label), ("Event", str(event.type))]
    if event.certificate_id:
        shown.append(("Certificate", event.certificate_id))
    shown.append(("When", event.occurred_at.isoformat()))
    return shown


def _lead(options: NotifierOptions, event: Event) -> str:
    mention = getattr(options, "mention", "")
    return f"{mention} " if mention and event.severity.label == "critical" else ""


class SlackNotifier(NotifierConnector):
    type_name: ClassVar[str] = "slack"
    options_model: ClassVar[type[NotifierOptions]] = ChatOptions
    secrets_model: ClassVar[type[NotifierSecrets]] = WebhookUrlSecrets

    def message(self, event: Event) -> dict[str, Any]:
        context = " · ".join(f"*{name}:* {value}" for name, value in facts(event))
        return {
            "text": f"{_lead(self.options, event)}{event.title}",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": event.title[:150]}},
                {"type": "section", "text": {"type": "mrkdwn", "text": event.summary[:3000]}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
            ],
        }

    async def deliver(self, event: Event, *, http: httpx2.AsyncClient, now: datetime) -> dict[str, Any]:
        assert isinstance(self.secrets, WebhookUrlSecrets)
        response = await post_json(http, self.secrets.webhook_url, self.message(event))
        return {"status": response.status_code}


class TeamsNotifier(NotifierConnector):
    type_name: ClassVar[str] = "teams"
    options_model: ClassVar[type[NotifierOptions]] = ChatOptions
    secrets_model: ClassVar[type[NotifierSecrets]] = WebhookUrlSecrets

    def message(self, event: Event) -> dict[str, Any]:
        card = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {
                    "type": "TextBlock",
                    "text": f"{_lead(self.options, event)}{event.title}",
                    "weight": "Bolder",
                    "size": "Medium",
                    "wrap": True,
                },
                {"type": "TextBlock", "text": event.summary, "wrap": True},
                {"type": "FactSet", "facts": [{"title": n, "value": v} for n, v in facts(event)]},
            ],
        }
        attachment = {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None}
        return {"type": "message", "attachments": [attachment | {"content": card}]}

    async def deliver(self, event: Event, *, http: httpx2.AsyncClient, now: datetime) -> dict[str, Any]:
        assert isinstance(self.secrets, WebhookUrlSecrets)
        response = await post_json(http, self.secrets.webhook_url, self.message(event))
        return {"status": response.status_code}
