"""The audit trail: every change is recorded, sealed into a hash chain, and tampering is detected."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

from sqlalchemy import delete, text, update

from certctl.store.db import unit_of_work
from certctl.store.models import AuditEvent
from certctl.store.repositories import audit
from certctl.store.repositories.audit import VerifyReport
from support.apps import ApiHarness

EVENTS = AuditEvent.__table__


def _seal_and_verify(api: ApiHarness) -> VerifyReport:
    async def run() -> VerifyReport:
        async with unit_of_work(api.services.context.engine) as uow:
            await audit.seal_pending(uow.connection)
        async with api.services.context.engine.connect() as connection:
            return await audit.verify(connection)

    return api.run(run)


def _change(api: ApiHarness, statement: object) -> None:
    async def run() -> None:
        async with unit_of_work(api.services.context.engine) as uow:
            await uow.connection.execute(statement)  # type: ignore[call-overload]

    api.run(run)


def _issue(api: ApiHarness, name: str) -> None:
    body = {"name": name, "issuer": "local", "profile": "default", "common_name": name}
    assert api.post("/api/v1/certificates", json=body).status_code == 201


def test_state_changes_are_audited_with_body_hash_and_latency(api: ApiHarness) -> None:
    _issue(api, "audited.example.com")
    rows = api.get("/api/v1/audit", params={"action": "certificate.issue"}).json()["items"]
    assert len(rows) == 1
    row = rows[0]
    assert row["actor"] == "test-admin" and row["outcome"] == "success"
    assert len(row["body_sha256"]) == 64 and row["latency_ms"] >= 0 and row["request_id"]
    assert row["details"]["name"] == "audited.example.com"


def test_chain_verifies_then_detects_edit_and_delete(api: ApiHarness) -> None:
    for index in range(5):
        _issue(api, f"chain{index}.example.com")
    report = _seal_and_verify(api)
    assert report.ok and report.sealed >= 10 and report.unsealed == 0
    _issue(api, "late.example.com")
    report = _seal_and_verify(api)
    assert report.ok
    _change(api, update(EVENTS).where(EVENTS.c.id == 3).values(actor="mallory"))
    edited = _seal_and_verify(api)
    assert not edited.ok and any("altered" in p for p in edited.problems)


def test_chain_detects_a_deleted_row(api: ApiHarness) -> None:
    for index in range(3):
        _issue(api, f"del{index}.example.com")
    assert _seal_and_verify(api).ok
    _change(api, delete(EVENTS).where(EVENTS.c.seq == 2))
    report = _seal_and_verify(api)
    assert not report.ok and any("missing" in p for p in report.problems)


def test_chain_detects_truncation_at_the_end(api: ApiHarness) -> None:
    _issue(api, "trunc.example.com")
    assert _seal_and_verify(api).ok
    _change(api, text("DELETE FROM audit_events WHERE seq = (SELECT MAX(seq) FROM audit_events)"))
    report = _seal_and_verify(api)
    assert not report.ok


def test_export_json_lines_and_csv(api: ApiHarness) -> None:
    _issue(api, "export.example.com")
    lines = api.get("/api/v1/audit/export").text.strip().splitlines()
    events = [json.loads(line) for line in lines]
    assert any(e["action"] == "certificate.issue" for e in events)
    assert all(len(e["event_hash"]) == 64 for e in events)
    table = list(csv.DictReader(io.StringIO(api.get("/api/v1/audit/export", params={"format": "csv"}).text)))
    assert len(table) == len(events)
    assert api.get("/api/v1/audit/export", params={"format": "xml"}).status_code == 422


def test_admin_audit_verify_command(api: ApiHarness) -> None:
    _issue(api, "cli.example.com")
    command = [sys.executable, "-m", "certctl.cli.main", "admin", "audit", "verify", "--database-url"]
    result = subprocess.run([*command, api.database_url], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "audit chain intact" in result.stdout
    _change(api, update(EVENTS).where(EVENTS.c.id == 1).values(details={"forged": True}))
    result = subprocess.run([*command, api.database_url], capture_output=True, text=True)
    assert result.returncode == 1
    assert "TAMPERED" in result.stderr
