"""Four-eyes approval with the ``certctl`` CLI against a live server: a held issue or renewal exits 0 with a
clear message, a second key approves and the certificate appears, self-approval is one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import ok, ok_json, one_error_line, run
from support.live import LiveServer
from support.seed import DEFAULT_RULES

ISSUE = ["certs", "issue", "--issuer", "local", "--profile", "cli-gated"]


@pytest.fixture(scope="module")
def approver(live_server: LiveServer) -> str:
    """A gated profile on the live server and a second admin key to approve with."""
    with live_server.client() as client:
        rules = DEFAULT_RULES | {"requires_approval": True}
        client.post("/api/v1/profiles", json={"name": "cli-gated", "rules": rules}).raise_for_status()
        created = client.post("/api/v1/keys", json={"name": "cli-approver", "roles": ["admin"]})
        created.raise_for_status()
        return str(created.json()["secret"])


def test_issue_is_held_then_approved_by_a_second_key(
    live_server: LiveServer, approver: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "held.key"
    held = run(
        live_server, tmp_path, *ISSUE, "--name", "cli-held", "--cn", "held.example.test",
        "--key-out", str(key_file),
    )  # fmt: skip
    assert held.returncode == 0, held.stderr
    assert "held for approval" in held.stderr and "certctl approvals approve apr_" in held.stderr
    assert "certctl certs export cli-held --include-key" in held.stderr
    assert not key_file.exists()
    pending = ok_json(live_server, tmp_path, "approvals", "list", "--status", "pending")["items"]
    approval = next(a for a in pending if "'cli-held'" in a["summary"])
    assert approval["id"] in held.stdout
    table = ok(live_server, tmp_path, "approvals", "list", "--kind", "certificate.issue")
    assert approval["id"] in table and "REQUESTED BY" in table
    assert run(live_server, tmp_path, "certs", "get", "cli-held").returncode == 1

    refused = run(live_server, tmp_path, "approvals", "approve", approval["id"])
    line = one_error_line(refused)
    assert line.startswith("error: 403") and "different person" in line

    decided = ok_json(
        live_server, tmp_path, "approvals", "approve", approval["id"], "--note", "checked", key=approver
    )
    assert decided["status"] == "approved" and decided["decided_by"] == "cli-approver"
    certificate = ok_json(live_server, tmp_path, "certs", "get", "cli-held")
    assert certificate["id"] == decided["result"]["certificate_id"]
    ok(live_server, tmp_path, "certs", "export", "cli-held", "--include-key", "--out", str(key_file))
    assert b"PRIVATE KEY" in key_file.read_bytes()
    shown = ok_json(live_server, tmp_path, "approvals", "get", approval["id"])
    assert shown["decision_note"] == "checked"
    again = run(live_server, tmp_path, "approvals", "approve", approval["id"], key=approver)
    assert one_error_line(again).startswith("error: 409")


def test_a_locally_generated_key_is_kept_while_the_request_waits(
    live_server: LiveServer, approver: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "local.key"
    answer = ok_json(
        live_server, tmp_path, *ISSUE, "--name", "cli-held-csr", "--cn", "csr.example.test",
        "--generate-csr", "--key-out", str(key_file),
    )  # fmt: skip
    approval = answer["approval"]
    assert approval["status"] == "pending" and approval["payload"]["request"]["csr_pem"]
    assert key_file.exists()
    rejected = ok_json(
        live_server, tmp_path, "approvals", "reject", approval["id"], "--note", "wrong name", key=approver
    )
    assert rejected["status"] == "rejected"
    no_note = run(live_server, tmp_path, "approvals", "reject", approval["id"])
    assert no_note.returncode == 2 and "Missing option '--note'" in no_note.stderr


def test_renew_is_held_too(live_server: LiveServer, approver: str, tmp_path: Path) -> None:
    with live_server.client() as client:
        created = client.post("/api/v1/profiles", json={"name": "cli-later", "rules": DEFAULT_RULES})
        created.raise_for_status()
    ok(
        live_server, tmp_path, "certs", "issue", "--issuer", "local", "--profile", "cli-later",
        "--name", "cli-renew", "--cn", "renew.example.test", "--key-out", str(tmp_path / "r.key"),
    )  # fmt: skip
    ok(live_server, tmp_path, "profiles", "update", "cli-later", "--file", str(_rules_file(tmp_path)))
    held = run(live_server, tmp_path, "certs", "renew", "cli-renew")
    assert held.returncode == 0, held.stderr
    assert "held for approval" in held.stderr and "renew 'cli-renew'" in held.stderr
    assert len(ok_json(live_server, tmp_path, "certs", "versions", "cli-renew")["items"]) == 1


def _rules_file(folder: Path) -> Path:
    path = folder / "gated.json"
    path.write_text(json.dumps({"requires_approval": True}))
    return path


def test_turning_approval_off_is_held_and_issuing_stays_held(
    live_server: LiveServer, approver: str, tmp_path: Path
) -> None:
    off = tmp_path / "off.json"
    off.write_text(json.dumps({"requires_approval": False}))
    held = run(live_server, tmp_path, "profiles", "update", "cli-gated", "--file", str(off))
    assert held.returncode == 0, held.stderr
    assert "held for approval" in held.stderr and "turns approval off" in held.stderr
    change_id = ok_json(live_server, tmp_path, "approvals", "list", "--kind", "profile.update")["items"][0][
        "id"
    ]
    assert (
        ok_json(live_server, tmp_path, "profiles", "get", "cli-gated")["rules"]["requires_approval"] is True
    )
    still = run(
        live_server, tmp_path, *ISSUE, "--name", "cli-flip", "--cn", "flip.example.test",
        "--key-out", str(tmp_path / "flip.key"),
    )  # fmt: skip
    assert still.returncode == 0 and "held for approval" in still.stderr
    ok(live_server, tmp_path, "approvals", "reject", change_id, "--note", "keep approval on", key=approver)
