"""Generic webhook: the event as JSON, signed with HMAC-SHA256 over ``timestamp + "." + body``.

Headers: ``X-Certctl-Event`` (type), ``X-Certctl-Delivery`` (the event key, stable across retries, for
receivers to deduplicate), ``X-Certctl-Timestamp`` (Unix seconds) and ``X-Certctl-Signature: v1=<hex>``.
A receiver recomputes the HMAC over the raw body, compares in constant time, and rejects a timestamp
older than five minutes (a replay); ``certctl.domain.notifications.verify_webhook`` does exactly that.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

import httpx2
from pydantic import Field

from certctl.connectors.notifiers.base import (
    TIMEOUT,
    DeliveryFailed,
    NotifierConnector,
    NotifierOptions,
    NotifierSecrets,
)
from certctl.domain.notifications import Event, sign_webhook


class WebhookSecrets(NotifierSecrets):
    url: str = Field(pattern=r"^https?://", max_length=2000, description="Receiver URL (may carry a token)")
    hmac_secret: str = Field(min_length=16, max_length=500, description="Shared HMAC-SHA256 key")


class WebhookNotifier(NotifierConnector):
    type_name: ClassVar[str] = "webhook"
    options_model: ClassVar[type[NotifierOptions]] = NotifierOptions
    secrets_model: ClassVar[type[NotifierSecrets]] = WebhookSecrets

    def request(self, event: Event, now: datetime) -> tuple[bytes, dict[str, str]]:
        assert isinstance(self.secrets, WebhookSecrets)
        body = json.dumps(event.to_payload(), sort_keys=True, separators=(",", ":")).encode()
        timestamp = int(now.timestamp())
        signature = sign_webhook(secret=self.secrets.hmac_secret.encode(), timestamp=timestamp, body=body)
        headers = {
            "Content-Type": "application/json",
            "X-Certctl-Event": str(event.type),
            "X-Certctl-Delivery": event.key,
            "X-Certctl-Timestamp": str(timestamp),
            "X-Certctl-Signature": f"v1={signature}",
        }
        return body, headers

    async def deliver(self, event: Event, *, http: httpx2.AsyncClient, now: datetime) -> dict[str, Any]:
        assert isinstance(self.secrets, WebhookSecrets)
        body, headers = self.request(event, now)
        try:
            response = await http.post(self.secrets.url, content=body, headers=headers, timeout=TIMEOUT)
        except (httpx2.HTTPError, httpx2.InvalidURL, ValueError) as exc:
            raise DeliveryFailed(f"could not reach the receiver: {type(exc).__name__}") from None
        if not response.is_success:
            raise DeliveryFailed(f"the receiver answered {response.status_code}: {response.text[:200]}")
        return {"status": response.status_code}
