"""The acceptance flow with real processes: a certctl server, a certctl agent and nginx on loopback.

Create a certificate mapped to the nginx target -> the agent makes the key, gets it signed, deploys,
nginx serves it -> renew -> the new certificate is served -> a deployment whose reload fails is rolled
back, nginx still serves the previous certificate, and the failure is reported and alerted.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.daemons_web import WebDaemon, fail_once_command, start_nginx
from support.live import LiveServer, certctl_command
from support.material import TestCa
from support.receivers import WEBHOOK_SECRET, HttpReceiver, http_receiver

pytestmark = [pytest.mark.peer("nginx"), pytest.mark.peer("openssl")]


def served_fingerprint(port: int) -> str:
    """SHA-256 of the leaf nginx serves, read with ``openssl s_client`` and ``openssl x509``."""
    shown = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "site.example.test"],
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    ).stdout
    fingerprint = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=shown, capture_output=True, check=True
    ).stdout.decode()
    return fingerprint.split("=", 1)[1].strip().replace(":", "").lower()


def served_soon(port: int, expected: str, seconds: float = 10.0) -> str:
    """What nginx serves once it serves ``expected``, or at the end of ``seconds``: a reload signals the
    workers and returns, so new connections may meet an old worker for a moment."""
    deadline = time.monotonic() + seconds
    served = served_fingerprint(port)
    while served != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        served = served_fingerprint(port)
    return served


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[WebDaemon]:
    ca = TestCa(tmp_path / "ca")
    daemon = start_nginx(tmp_path / "nginx", ca.material("site.example.test"))
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as running:
        yield running


def agent(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*certctl_command(), "agent", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_agent_deploys_renews_and_rolls_back_on_nginx(
    live_server: LiveServer, nginx: WebDaemon, receiver: HttpReceiver, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    client = live_server.client()
    hook = client.post(
        "/api/v1/notifications/channels",
        json={
            "name": f"deploy-hook-{suffix}",
            "type": "webhook",
            "secrets": {"url": f"{receiver.url}/webhook", "hmac_secret": WEBHOOK_SECRET},
        },
    )
    assert hook.status_code == 201, hook.text
    rule = client.post(
        "/api/v1/notifications/rules",
        json={
            "name": f"deploy-failures-{suffix}",
            "channel_ids": [hook.json()["id"]],
            "event_types": ["deployment.failed"],
        },
    )
    assert rule.status_code == 201, rule.text

    token = client.post("/api/v1/agents/enrolment-tokens", json={"name": f"web-{suffix}"}).json()["token"]
    token_file = tmp_path / "token"
    token_file.write_text(token)
    state = tmp_path / "agent-state"
    enrolled = agent(
        state,
        "enrol",
        "--server",
        live_server.url,
        "--token-file",
        str(token_file),
        "--ca-bundle",
        str(live_server.ca_bundle),
    )
    assert enrolled.returncode == 0, enrolled.stderr
    assert (state / "agent.json").stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700

    options = nginx.target_options(verify={"port": nginx.port, "server_name": "site.example.test"})
    target = client.post(
        "/api/v1/targets",
        json={"name": f"nginx-{suffix}", "type": "nginx", "agent": f"web-{suffix}", "options": options},
    )
    assert target.status_code == 201, target.text
    created = client.post(
        "/api/v1/certificates",
        json={
            "name": f"site-{suffix}",
            "issuer": "local",
            "profile": "default",
            "sans": ["site.example.test"],
            "targets": [target.json()["id"]],
        },
    )
    assert created.status_code == 202, created.text
    certificate_id = created.json()["id"]

    first = agent(state, "run", "--once")
    assert first.returncode == 0, first.stdout + first.stderr
    current = client.get(f"/api/v1/certificates/{certificate_id}").json()
    assert current["status"] == "Active"
    first_fp = (
        current["current_version"]["fingerprint_sha256"]
        if "current_version" in current
        else _current_fp(client, certificate_id)
    )
    assert served_soon(nginx.port, first_fp) == first_fp
    assert not any((state / "keys").glob("pending-*")), "the certified key is filed under its public key"
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (state / "keys").iterdir())
    assert client.get(f"/api/v1/targets/{target.json()['id']}").json()["last_check"]["ok"] is True

    assert client.post(f"/api/v1/certificates/{certificate_id}/renew").status_code == 202
    # The renewal runs as a job: the agent's next polls bring the key request, then the new version (on a
    # busy machine the job may land after the first of them, as with any agent polling every 30 s).
    for _ in range(10):
        second = agent(state, "run", "--once")
        assert second.returncode == 0, second.stdout + second.stderr
        second_fp = _current_fp(client, certificate_id)
        if second_fp != first_fp and served_fingerprint(nginx.port) == second_fp:
            break
        time.sleep(0.5)
    assert second_fp != first_fp
    assert served_fingerprint(nginx.port) == second_fp

    patched = client.patch(
        f"/api/v1/targets/{target.json()['id']}",
        json={"options": {"reload_command": fail_once_command(tmp_path, nginx.reload_argv)}},
    )
    assert patched.status_code == 200, patched.text
    assert client.post(f"/api/v1/certificates/{certificate_id}/renew").status_code == 202
    third = agent(state, "run", "--once")
    assert third.returncode == 1, third.stdout + third.stderr
    assert "rolled_back" in third.stdout
    assert served_fingerprint(nginx.port) == second_fp, "nginx still serves the previous certificate"
    history = client.get(f"/api/v1/certificates/{certificate_id}/deployments").json()["items"]
    assert history[0]["status"] == "rolled_back"
    assert "reload refused" in history[0]["message"]
    assert [h["status"] for h in history[1:3]] == ["succeeded", "succeeded"]

    def alerts() -> list[dict[str, Any]]:
        received = [r.json() for r in receiver.on("/webhook")]
        return [a for a in received if a["certificate_id"] == certificate_id]

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not alerts():
        time.sleep(0.5)
    [payload] = alerts()
    assert payload["type"] == "deployment.failed" and payload["severity"] == "critical"
    assert payload["certificate_id"] == certificate_id and "reload refused" in payload["details"]["message"]


def _current_fp(client: Any, certificate_id: str) -> str:
    versions = client.get(f"/api/v1/certificates/{certificate_id}/versions").json()["items"]
    current = client.get(f"/api/v1/certificates/{certificate_id}").json()["current_version_id"]
    return str(next(v["fingerprint_sha256"] for v in versions if v["id"] == current))
