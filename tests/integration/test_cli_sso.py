"""``certctl sso`` and ``certctl sessions`` against a live server: a provider added with its secret read
from a file (never echoed), a group mapped and removed, bad input answered with one readable line, and
sessions listed, revoked and the signing key rotated."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import ok, ok_json, one_error_line, run
from support.live import LiveServer

SECRET = "corp-client-" + "secret-4b7e1c"


def test_providers_mappings_and_sessions(live_server: LiveServer, tmp_path: Path) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(SECRET + "\n")
    added = ok(
        live_server,
        tmp_path,
        "sso",
        "providers",
        "add",
        "clicorp",
        "--issuer",
        "https://idp.example.test",
        "--client-id",
        "certctl",
        "--client-secret-file",
        str(secret_file),
        "--email-domain",
        "example.test",
    )
    assert "clicorp" in added and SECRET not in added
    listed = ok_json(live_server, tmp_path, "sso", "providers", "list")
    [corp] = [p for p in listed["items"] if p["name"] == "clicorp"]
    assert corp["client_secret_set"] is True and SECRET not in json.dumps(listed)
    assert corp["allowed_email_domains"] == ["example.test"]

    mapping = ok_json(
        live_server, tmp_path, "sso", "mappings", "add", "clicorp", "--group", "pki-ops", "--role", "operator"
    )
    assert mapping["group_name"] == "pki-ops"
    assert [
        m["id"] for m in ok_json(live_server, tmp_path, "sso", "mappings", "list", "clicorp")["items"]
    ] == [mapping["id"]]
    ok(live_server, tmp_path, "sso", "mappings", "remove", "clicorp", mapping["id"])

    unknown_role = run(
        live_server, tmp_path, "sso", "mappings", "add", "clicorp", "--group", "g", "--role", "nope"
    )
    assert one_error_line(unknown_role).startswith("error:")
    plain_http = run(
        live_server,
        tmp_path,
        "sso",
        "providers",
        "add",
        "bad",
        "--issuer",
        "http://idp.example.test",
        "--client-id",
        "x",
    )
    assert "https" in one_error_line(plain_http)
    missing = run(
        live_server,
        tmp_path,
        "sso",
        "providers",
        "add",
        "bad2",
        "--issuer",
        "https://idp.example.test",
        "--client-id",
        "x",
        "--client-secret-file",
        str(tmp_path / "absent"),
    )
    assert one_error_line(missing).startswith("error: cannot read")

    updated = ok_json(
        live_server,
        tmp_path,
        "sso",
        "providers",
        "update",
        "clicorp",
        "--disable",
        "--scope",
        "openid",
        "--scope",
        "email",
    )
    assert updated["enabled"] is False and updated["scopes"] == ["openid", "email"]
    ok(live_server, tmp_path, "sso", "providers", "remove", "clicorp")
    assert "clicorp" not in ok(live_server, tmp_path, "sso", "providers", "list")

    assert isinstance(ok_json(live_server, tmp_path, "sso", "users")["items"], list)
    assert isinstance(ok_json(live_server, tmp_path, "sessions", "list")["items"], list)
    assert ok_json(live_server, tmp_path, "sessions", "list", "--mine")["items"] == []
    ended = ok_json(
        live_server, tmp_path, "sessions", "revoke", "--principal-type", "user", "--principal-id", "usr_x"
    )
    assert ended == {"sessions_ended": 0}
    no_target = run(live_server, tmp_path, "sessions", "revoke")
    assert "handle" in one_error_line(no_target)
    gone = run(live_server, tmp_path, "sessions", "revoke", "0123456789abcdef")
    assert one_error_line(gone).startswith("error: 404")
    rotated = ok_json(live_server, tmp_path, "sessions", "rotate-key")
    assert rotated["id"]
