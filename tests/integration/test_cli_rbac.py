"""``certctl roles`` and ``certctl keys grant|grants|ungrant`` against a live server."""

from __future__ import annotations

from pathlib import Path

from support.cli import ok, ok_json, one_error_line, run
from support.live import LiveServer


def test_custom_role_scoped_grant_and_escalation_refusal(live_server: LiveServer, tmp_path: Path) -> None:
    ok(live_server, tmp_path, "roles", "create", "--name", "renewer", "--permission", "cert.read",
       "--permission", "cert.renew")  # fmt: skip
    roles = ok_json(live_server, tmp_path, "roles", "list")
    names = {r["name"] for r in roles["items"]}
    assert {"admin", "auditor", "mcp", "renewer"} <= names
    secret = ok(live_server, tmp_path, "keys", "create", "--name", "renew-bot", "--role", "auditor").strip()
    key_id = ok_json(live_server, tmp_path, "whoami", key=secret)["id"]
    grant = ok_json(
        live_server, tmp_path, "keys", "grant", key_id, "--role", "renewer", "--profile", "default",
        "--expires-in-days", "7",
    )  # fmt: skip
    assert grant["scope_type"] == "profile"
    assert grant["expires_at"]
    grants = ok_json(live_server, tmp_path, "keys", "grants", key_id)["items"]
    assert {g["role"] for g in grants} == {"auditor", "renewer"}
    refused = run(live_server, tmp_path, "keys", "grant", key_id, "--role", "admin", key=secret)
    assert one_error_line(refused).startswith("error: 403")
    ok(live_server, tmp_path, "keys", "ungrant", key_id, grant["id"])
    assert {g["role"] for g in ok_json(live_server, tmp_path, "keys", "grants", key_id)["items"]} == {
        "auditor"
    }
    ok(live_server, tmp_path, "roles", "update", "renewer", "--remove", "cert.renew")
    assert ok_json(live_server, tmp_path, "roles", "get", "renewer")["permissions"] == ["cert.read"]
    ok(live_server, tmp_path, "roles", "delete", "renewer")
    both = run(
        live_server, tmp_path, "keys", "grant", key_id, "--role", "viewer", "--profile", "a", "--issuer", "b"
    )
    assert one_error_line(both, exit_code=2).startswith("error:")
