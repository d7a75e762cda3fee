"""Email over SMTP: STARTTLS (RFC 3207, port 587), implicit TLS (RFC 8314, port 465) or plain (local
relays only), optional AUTH, and a multipart/alternative message with a text and an HTML part.

Sending uses the standard library's ``smtplib`` in a worker thread (no extra dependency); the server
certificate is verified against the system trust store, or against ``ca_pem`` when given.
"""

from __future__ import annotations

import asyncio
import html
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, ClassVar, Literal

import httpx2
from pydantic import Field

from certctl.connectors.notifiers.base import (
    DeliveryFailed,
    NotifierConnector,
    NotifierOptions,
    NotifierSecrets,
)
from certctl.domain.notifications import Event

TIMEOUT = 15.0


class EmailOptions(NotifierOptions):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = Field(default="", max_length=320)
    from_address: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    to: tuple[str, ...] = Field(min_length=1, max_length=100)
    subject_prefix: str = Field(default="[certctl]", max_length=100)
    ca_pem: str | None = Field(default=None, max_length=100_000, description="Trust only this CA (PEM)")


class EmailSecrets(NotifierSecrets):
    password: str = Field(default="", max_length=1000)


def render_text(event: Event) -> str:
    lines = [event.title, "", event.summary, "", f"Severity: {event.severity.label}", f"Event: {event.type}"]
    if event.certificate_id:
        lines.append(f"Certificate: {event.certificate_id}")
    lines.append(f"When: {event.occurred_at.isoformat()}")
    return "\n".join(lines) + "\n"


def render_html(event: Event) -> str:
    rows = [("Severity", event.severity.label), ("Event", str(event.type))]
    if event.certificate_id:
        rows.append(("Certificate", event.certificate_id))
    rows.append(("When", event.occurred_at.isoformat()))
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    summary = html.escape(event.summary).replace("\n", "<br>\n")
    return (
        f"<!doctype html><html><body><h2>{html.escape(event.title)}</h2><p>{summary}</p>"
        f"<table>{table}</table></body></html>\n"
    )


class EmailNotifier(NotifierConnector):
    type_name: ClassVar[str] = "email"
    options_model: ClassVar[type[NotifierOptions]] = EmailOptions
    secrets_model: ClassVar[type[NotifierSecrets]] = EmailSecrets

    def message(self, event: Event, now: datetime) -> EmailMessage:
        assert isinstance(self.options, EmailOptions)
        message = EmailMessage()
        message["Subject"] = f"{self.options.subject_prefix} {event.title}".strip()
        message["From"] = self.options.from_address
        message["To"] = ", ".join(self.options.to)
        message["Date"] = format_datetime(now)
        message["Message-ID"] = make_msgid(domain="certctl")
        message["X-Certctl-Event"] = str(event.type)
        message.set_content(render_text(event))
        message.add_alternative(render_html(event), subtype="html")
        return message

    def _tls(self) -> ssl.SSLContext:
        assert isinstance(self.options, EmailOptions)
        context = ssl.create_default_context(cadata=self.options.ca_pem) if self.options.ca_pem else None
        return context or ssl.create_default_context()

    def _send(self, message: EmailMessage) -> None:
        assert isinstance(self.options, EmailOptions) and isinstance(self.secrets, EmailSecrets)
        options = self.options
        smtp: smtplib.SMTP
        if options.security == "tls":
            smtp = smtplib.SMTP_SSL(options.host, options.port, timeout=TIMEOUT, context=self._tls())
        else:
            smtp = smtplib.SMTP(options.host, options.port, timeout=TIMEOUT)
        with smtp:
            smtp.ehlo()
            if options.security == "starttls":
                smtp.starttls(context=self._tls())
                smtp.ehlo()
            if options.username:
                smtp.login(options.username, self.secrets.password)
            smtp.send_message(message)

    async def deliver(self, event: Event, *, http: httpx2.AsyncClient, now: datetime) -> dict[str, Any]:
        message = self.message(event, now)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryFailed(f"SMTP delivery failed: {type(exc).__name__}: {exc}"[:500]) from None
        return {"message_id": message["Message-ID"], "recipients": len(self.options_to())}

    def options_to(self) -> tuple[str, ...]:
        assert isinstance(self.options, EmailOptions)
        return self.options.to
