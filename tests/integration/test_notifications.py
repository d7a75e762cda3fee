"""Notifications end to end on both engines, against real loopback peers: aiosmtpd (STARTTLS and
implicit TLS) and an HTTP receiver standing in for Slack, Teams, PagerDuty, OpsGenie and a webhook
consumer that verifies signatures. No client is mocked."""

from __future__ import annotations

import email
import hashlib
import hmac
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from certctl.scheduler.runner import job_worker
from certctl.store.models import NotificationChannel, table_of
from support.apps import ApiHarness
from support.receivers import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    HttpReceiver,
    free_port,
    http_receiver,
    smtp_server,
)
from support.renewals import freeze, issue
from support.seed import DEFAULT_RULES

BASE = "/api/v1/notifications"


def channel(api: ApiHarness, name: str, kind: str, options: dict[str, Any], secrets: dict[str, str]) -> str:
    body = {"name": name, "type": kind, "options": options, "secrets": secrets}
    created = api.post(f"{BASE}/channels", json=body)
    assert created.status_code == 201, created.text
    channel_id: str = created.json()["id"]
    return channel_id


def rule(api: ApiHarness, name: str, channels: list[str], **extra: Any) -> dict[str, Any]:
    created = api.post(f"{BASE}/rules", json={"name": name, "channel_ids": channels} | extra)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def drain(api: ApiHarness) -> None:
    worker = job_worker(api.services, name="test-worker")
    while api.run(worker.run_once):
        pass


def deliveries(api: ApiHarness, **params: str) -> list[dict[str, Any]]:
    listed = api.get(f"{BASE}/deliveries", params=params | {"limit": "500"})
    assert listed.status_code == 200, listed.text
    items: list[dict[str, Any]] = listed.json()["items"]
    return items


def email_channel(api: ApiHarness, name: str, port: int, ca_pem: str, security: str) -> str:
    options = {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "username": SMTP_USER,
        "from_address": "certctl@example.com",
        "to": ["ops@example.com", "pki@example.com"],
        "ca_pem": ca_pem,
    }
    return channel(api, name, "email", options, {"password": SMTP_PASSWORD})


def parts(raw: bytes) -> dict[str, str]:
    message = email.message_from_bytes(raw)
    assert message.get_content_type() == "multipart/alternative"
    found = {}
    for part in message.walk():
        if isinstance(part, Message) and not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[part.get_content_type()] = payload.decode()
    return found


def test_secrets_are_sealed_and_never_returned(api: ApiHarness) -> None:
    token_url = "https://hooks.slack.example/services/T000/B000/s3cr3tT0ken"
    channel_id = channel(api, "chat", "slack", {}, {"webhook_url": token_url})
    for answer in (api.get(f"{BASE}/channels"), api.get(f"{BASE}/channels/{channel_id}")):
        assert answer.status_code == 200
        assert "s3cr3tT0ken" not in answer.text
    shown = api.get(f"{BASE}/channels/chat").json()
    assert shown["secrets_set"] == ["webhook_url"] and "secrets_sealed" not in shown

    async def stored() -> bytes:
        table = table_of(NotificationChannel)
        async with api.services.context.engine.connect() as connection:
            sealed: bytes = (await connection.execute(select(table.c.secrets_sealed))).scalar_one()
            return sealed

    assert b"s3cr3tT0ken" not in api.run(stored)
    bad = api.post(
        f"{BASE}/channels", json={"name": "x", "type": "slack", "secrets": {"webhook_url": "nope-tok"}}
    )
    assert bad.status_code == 422 and "nope-tok" not in bad.text
    assert bad.json()["type"] == "urn:certctl:problem:validation-error"
    unknown = api.post(f"{BASE}/channels", json={"name": "y", "type": "carrier-pigeon"})
    assert unknown.status_code == 422
    bad_rule = api.post(
        f"{BASE}/rules", json={"name": "r", "channel_ids": [channel_id], "min_severity": "loud"}
    )
    assert bad_rule.status_code == 422
    assert api.get(f"{BASE}/rules").json()["items"] == []
    rule(api, "uses-chat", [channel_id])
    assert api.delete(f"{BASE}/channels/{channel_id}").status_code == 409
    reader = api.key_for("viewer")
    assert api.get(f"{BASE}/channels", key=reader).status_code == 200
    assert api.post(f"{BASE}/channels/{channel_id}/test", key=reader).status_code == 403


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_email_arrives_with_text_and_html_over_starttls_and_implicit_tls(
    api: ApiHarness, tmp_path: Path
) -> None:
    with (
        smtp_server(tmp_path / "a", implicit_tls=False) as starttls,
        smtp_server(tmp_path / "b", implicit_tls=True) as implicit,
    ):
        for server, security in ((starttls, "starttls"), (implicit, "tls")):
            channel_id = email_channel(api, f"mail-{security}", server.port, server.ca_pem, security)
            answer = api.post(f"{BASE}/channels/{channel_id}/test")
            assert answer.status_code == 200 and answer.json()["delivered"] is True, answer.text
            assert len(server.messages) == 1
            message = email.message_from_bytes(server.messages[0])
            assert message["To"] == "ops@example.com, pki@example.com"
            assert message["Subject"] == "[certctl] certctl test notification"
            found = parts(server.messages[0])
            assert "is set up" in found["text/plain"]
            assert "<h2>certctl test notification</h2>" in found["text/html"]


def http_channels(api: ApiHarness, receiver: HttpReceiver) -> dict[str, str]:
    url = receiver.url
    return {
        "slack": channel(api, "slack", "slack", {}, {"webhook_url": f"{url}/slack?token=t1"}),
        "teams": channel(api, "teams", "teams", {}, {"webhook_url": f"{url}/teams?sig=t2"}),
        "pagerduty": channel(api, "pd", "pagerduty", {"url": f"{url}/pd"}, {"routing_key": "R0UTING"}),
        "opsgenie": channel(api, "og", "opsgenie", {"url": f"{url}/og/v2/alerts"}, {"api_key": "G3NIE"}),
        "webhook": channel(
            api, "hook", "webhook", {}, {"url": f"{url}/webhook", "hmac_secret": WEBHOOK_SECRET}
        ),
        "dead": channel(api, "dead", "slack", {}, {"webhook_url": f"http://127.0.0.1:{free_port()}/x"}),
    }


def test_http_channels_wire_formats_fault_isolation_and_dead_letters(api: ApiHarness) -> None:
    clock = freeze(api)
    producer = api.services.notification_producer
    with http_receiver() as receiver:
        receiver.now = api.services.context.clock.now
        ids = http_channels(api, receiver)
        rule(api, "everything", list(ids.values()))
        certificate = issue(api, "shop", timedelta(days=10))
        assert api.run(lambda: producer.scan_expiry(now=clock.at)) == 6
        drain(api)
        by_status = {d["channel_id"]: d for d in deliveries(api)}
        assert {c for c, d in by_status.items() if d["status"] == "succeeded"} == set(ids.values()) - {
            ids["dead"]
        }
        assert (
            by_status[ids["dead"]]["status"] == "pending"
            and "ConnectError" in by_status[ids["dead"]]["last_error"]
        )

        slack = receiver.on("/slack")[0].json()
        assert [b["type"] for b in slack["blocks"]] == ["header", "section", "context"]
        assert slack["blocks"][0]["text"]["text"] == "Certificate shop expires in 10 days"
        teams = receiver.on("/teams")[0].json()
        assert teams["type"] == "message"
        attachment = teams["attachments"][0]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert attachment["content"]["type"] == "AdaptiveCard" and attachment["content"]["version"] == "1.4"
        pagerduty = receiver.on("/pd")[0].json()
        assert pagerduty["routing_key"] == "R0UTING" and pagerduty["event_action"] == "trigger"
        assert pagerduty["dedup_key"] == f"certctl:{certificate['id']}"
        assert pagerduty["payload"]["severity"] == "warning" and pagerduty["payload"]["source"] == "certctl"
        opsgenie = receiver.on("/og/v2/alerts")[0]
        assert opsgenie.headers["Authorization"] == "GenieKey G3NIE"
        assert (
            opsgenie.json()["alias"] == f"certctl:{certificate['id']}" and opsgenie.json()["priority"] == "P3"
        )

        hook = receiver.on("/webhook")[0]
        timestamp = hook.headers["X-Certctl-Timestamp"]
        expected = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + hook.body, hashlib.sha256)
        assert hook.headers["X-Certctl-Signature"] == f"v1={expected.hexdigest()}"
        assert (
            hook.json()["type"] == "certificate.expiring" and hook.json()["details"]["threshold_days"] == 14
        )
        replay_at = clock.at + timedelta(minutes=10)
        receiver.now = lambda: replay_at
        signed = {k: v for k, v in hook.headers.items() if k.startswith("X-Certctl")}
        replay = httpx2.post(f"{receiver.url}/webhook", content=hook.body, headers=signed)
        assert replay.status_code == 401, "an old timestamp is a replay"
        receiver.now = api.services.context.clock.now
        tampered = httpx2.post(f"{receiver.url}/webhook", content=hook.body + b" ", headers=signed)
        assert tampered.status_code == 401

        for _ in range(8):
            clock.at += timedelta(hours=1)
            drain(api)
        dead = next(d for d in deliveries(api) if d["channel_id"] == ids["dead"])
        assert dead["status"] == "failed" and dead["attempts"] == dead["max_attempts"] == 6
        assert [d["id"] for d in deliveries(api, status="failed")] == [dead["id"]]
        requeued = api.post(f"{BASE}/deliveries/{dead['id']}/requeue")
        assert requeued.status_code == 200 and requeued.json()["status"] == "pending"
        assert requeued.json()["attempts"] == 0
        assert api.post(f"{BASE}/deliveries/{dead['id']}/requeue").status_code == 409
        assert api.post(f"{BASE}/deliveries/job_nope/requeue").status_code == 404
        assert len(receiver.on("/slack")) == 1, "a delivered event is not sent again"

        renewed = api.post(f"/api/v1/certificates/{certificate['id']}/renew")
        assert renewed.status_code == 200, renewed.text
        assert api.run(lambda: producer.scan_audit(now=clock.at + timedelta(seconds=1))) == 6
        assert api.run(lambda: producer.scan_audit(now=clock.at + timedelta(seconds=2))) == 0
        drain(api)
        resolve = receiver.on("/pd")[-1].json()
        assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == f"certctl:{certificate['id']}"
        assert receiver.on(f"/og/v2/alerts/certctl%3A{certificate['id']}/close")
        assert receiver.on("/webhook")[-1].json()["type"] == "certificate.renewed"


def test_expiry_thresholds_fire_once_each(api: ApiHarness) -> None:
    clock = freeze(api)
    producer = api.services.notification_producer
    with http_receiver() as receiver:
        chat = channel(api, "chat", "slack", {}, {"webhook_url": f"{receiver.url}/slack"})
        rule(api, "expiry", [chat], event_types=["certificate.expiring"])
        rule(api, "critical-only", [chat], event_types=["certificate.expiring"], min_severity="critical")
        issue(api, "web", timedelta(days=40))
        start = clock.at
        fired = []
        for days in (0, 9, 11, 11, 20, 27, 27, 34, 39, 40, 41):
            fired.append(api.run(lambda d=days: producer.scan_expiry(now=start + timedelta(days=d))))
        assert fired == [0, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0]
        keys = sorted(d["event_key"].rsplit(":", 1)[1] for d in deliveries(api))
        assert keys == ["0", "14", "30", "7"]


def test_daily_digest_goes_out_once_a_day(api: ApiHarness, tmp_path: Path) -> None:
    clock = freeze(api)
    clock.at = clock.at.replace(hour=8, minute=0)
    producer = api.services.notification_producer
    issue(api, "soon", timedelta(days=3))
    with smtp_server(tmp_path, implicit_tls=False) as server:
        mail = email_channel(api, "digest-mail", server.port, server.ca_pem, "starttls")
        rule(api, "digest", [mail], event_types=["digest"])
        assert api.run(lambda: producer.send_digest(now=clock.at)) == 1
        assert api.run(lambda: producer.send_digest(now=clock.at + timedelta(hours=3))) == 0
        drain(api)
        assert len(server.messages) == 1
        text = parts(server.messages[0])["text/plain"]
        assert "Expiring within 14 days: 1" in text and "soon" in text
        next_morning = clock.at.replace(hour=6) + timedelta(days=1)
        assert api.run(lambda: producer.send_digest(now=next_morning)) == 0, "not before the digest hour"
        assert api.run(lambda: producer.tick(now=next_morning + timedelta(hours=2))) == 1, "the leader's tick"
        assert api.run(lambda: producer.tick(now=next_morning + timedelta(hours=3))) == 0


def test_policy_blocks_approval_requests_and_revocations_are_notified_once(api: ApiHarness) -> None:
    clock = freeze(api)
    producer = api.services.notification_producer
    with http_receiver() as receiver:
        receiver.now = api.services.context.clock.now
        hook = channel(
            api, "hook", "webhook", {}, {"url": f"{receiver.url}/webhook", "hmac_secret": WEBHOOK_SECRET}
        )
        rule(
            api,
            "security",
            [hook],
            event_types=["policy.blocked", "certificate.revoked", "approval.requested"],
            min_severity="info",
        )
        policy = {
            "name": "no-internal",
            "rules": [{"type": "denied_domains", "patterns": ["*.internal.example.com"]}],
        }
        assert api.post("/api/v1/policies", json=policy).status_code == 201
        blocked = api.post(
            "/api/v1/certificates",
            json={
                "name": "db.internal.example.com",
                "issuer": "local",
                "profile": "default",
                "sans": ["db.internal.example.com"],
            },
        )
        assert blocked.status_code == 422, blocked.text
        certificate = issue(api, "pay", timedelta(days=90))
        gated = api.post(
            "/api/v1/profiles", json={"name": "gated", "rules": DEFAULT_RULES | {"requires_approval": True}}
        )
        assert gated.status_code == 201, gated.text
        held = api.post(
            "/api/v1/certificates",
            json={
                "name": "vault.example.com",
                "issuer": "local",
                "profile": "gated",
                "common_name": "vault.example.com",
            },
        )
        assert held.status_code == 202, held.text
        revoked = api.post(f"/api/v1/certificates/{certificate['id']}/revoke", json={})
        assert revoked.status_code == 200, revoked.text
        assert api.run(lambda: producer.scan_audit(now=clock.at + timedelta(seconds=1))) == 3
        assert api.run(lambda: producer.scan_audit(now=clock.at + timedelta(minutes=1))) == 0
        drain(api)
        sent = {r.json()["type"]: r.json() for r in receiver.on("/webhook")}
        assert sorted(sent) == ["approval.requested", "certificate.revoked", "policy.blocked"]
        assert sent["certificate.revoked"]["certificate_id"] == certificate["id"]
        assert "db.internal.example.com" in sent["policy.blocked"]["title"]
