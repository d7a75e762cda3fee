"""The agent's work cycle against the in-process API: keys made on the host, files written, outcomes
reported, dry runs that change nothing, retirement that stops the agent and removes its credential."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_agents_api import enrol
from test_web_jobs import sign_in

from certctl.agent.api import AgentApi
from certctl.agent.keys import KeyStore, spki_sha256
from certctl.agent.runner import AgentRunner
from certctl.agent.state import Enrolment, StateDir
from support.apps import ApiHarness


def runner_for(
    api: ApiHarness, agent: dict[str, Any], state_dir: Path, *, dry_run: bool = False
) -> AgentRunner:
    state = StateDir(state_dir)
    enrolment = Enrolment(
        server="https://testserver", agent_id=agent["id"], name=agent["name"], credential=agent["credential"]
    )
    state.save(enrolment)
    transport = httpx2.ASGITransport(app=api.client.app)
    return AgentRunner(state, AgentApi(enrolment, transport=transport), dry_run=dry_run)


def files_certificate(api: ApiHarness, agent: dict[str, Any], out: Path) -> str:
    target = api.post(
        "/api/v1/targets",
        json={
            "name": "files",
            "type": "files",
            "agent": agent["id"],
            "options": {"fullchain_path": str(out / "site.pem"), "key_path": str(out / "site.key")},
        },
    )
    assert target.status_code == 201, target.text
    created = api.post(
        "/api/v1/certificates",
        json={
            "name": "files-site",
            "issuer": "local",
            "profile": "default",
            "sans": ["files.example.com"],
            "targets": ["files"],
        },
    )
    assert created.status_code == 202, created.text
    certificate_id: str = created.json()["id"]
    return certificate_id


def test_cycle_makes_the_key_here_and_writes_the_files(api: ApiHarness, tmp_path: Path) -> None:
    agent = enrol(api, "files-host")
    out = tmp_path / "out"
    out.mkdir()
    certificate_id = files_certificate(api, agent, out)
    runner = runner_for(api, agent, tmp_path / "state")
    report = api.run(runner.cycle)
    assert report.ok and report.enrolled == 1 and report.deployed == 1 and report.checked == 1, report.lines
    leaf = x509.load_pem_x509_certificate((out / "site.pem").read_bytes())
    key = serialization.load_pem_private_key((out / "site.key").read_bytes(), password=None)
    assert spki_sha256(leaf.public_key()) == spki_sha256(key.public_key())
    assert (out / "site.key").stat().st_mode & 0o777 == 0o600
    keys = list((tmp_path / "state" / "keys").iterdir())
    assert [k.name for k in keys] == [f"{spki_sha256(key.public_key())}.key"]
    history = api.get(f"/api/v1/certificates/{certificate_id}/deployments").json()["items"]
    assert history[0]["status"] == "succeeded" and history[0]["steps"]
    # nothing more to do: the next cycle is empty
    assert api.run(runner.cycle).lines == []
    # the dashboard's certificate page shows the targets and the deployment
    sign_in(api, api.admin_key)
    page = api.client.get(f"/certificates/{certificate_id}")
    assert page.status_code == 200
    assert "Deployments" in page.text and "deploy-succeeded" in page.text and ">files<" in page.text


def test_dry_run_changes_nothing_and_reports_nothing(api: ApiHarness, tmp_path: Path) -> None:
    agent = enrol(api, "dry-host")
    out = tmp_path / "out"
    out.mkdir()
    certificate_id = files_certificate(api, agent, out)
    report = api.run(runner_for(api, agent, tmp_path / "state", dry_run=True).cycle)
    assert any("would generate" in line for line in report.lines)
    assert list(out.iterdir()) == []
    assert api.get(f"/api/v1/certificates/{certificate_id}").json()["status"] == "Pending"
    history = api.get(f"/api/v1/certificates/{certificate_id}/deployments").json()["items"]
    assert history[0]["status"] == "in_progress"
    sign_in(api, api.admin_key)
    page = api.client.get(f"/certificates/{certificate_id}")
    assert page.status_code == 200 and "Pending" in page.text and "in progress" in page.text


def test_a_key_certified_later_is_found_by_its_public_key(tmp_path: Path) -> None:
    """A CSR held for approval is certified later: the pending key is found by the certificate itself."""
    from cryptography import x509 as x
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    store = KeyStore(tmp_path / "keys")
    csr = x.load_pem_x509_csr(
        store.csr_for("crt_1", "ecdsa-p256", common_name=None, sans=["a.example"]).encode()
    )
    key = store.pending_key("crt_1", "ecdsa-p256")
    name = x.Name([x.NameAttribute(NameOID.COMMON_NAME, "a.example")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    cert = (
        x.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(csr.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    assert store.key_for(pem) is not None
    assert not list((tmp_path / "keys").glob("pending-*"))


def test_a_retired_agent_stops_and_forgets_its_credential(api: ApiHarness, tmp_path: Path) -> None:
    agent = enrol(api, "leaving")
    runner = runner_for(api, agent, tmp_path / "state")
    assert api.post(f"/api/v1/agents/{agent['id']}/retire").status_code == 200
    code = api.run(lambda: runner.run_forever(poll_seconds=1, heartbeat_seconds=5))
    assert code == 0
    assert not (tmp_path / "state" / "agent.json").exists()
