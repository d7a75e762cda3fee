"""The operator CLI (``certctl certs|issuers|profiles|cas|teams|owners|keys|audit|whoami``) as a user runs it:
a real subprocess against a live HTTPS server, checking exit codes, files, modes and the one-line errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from certctl.pki.csr import build_csr
from certctl.pki.keys import generate_private_key, private_key_to_pem
from support.cli import ok, ok_json, one_error_line, run
from support.live import LiveServer, free_port

ISSUE = ["certs", "issue", "--issuer", "local", "--profile", "default"]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_issue_with_server_keygen_writes_the_key_0600(live_server: LiveServer, tmp_path: Path) -> None:
    key_file, cert_file = tmp_path / "srv.key", tmp_path / "srv.pem"
    result = run(
        live_server,
        tmp_path,
        *ISSUE,
        "--name",
        "cli-server-keygen",
        "--cn",
        "keygen.example.test",
        "--san",
        "keygen.example.test",
        "--san",
        "10.1.2.3",
        "--key-type",
        "rsa-2048",
        "--key-out",
        str(key_file),
        "--cert-out",
        str(cert_file),
        "--tag",
        "app=web",
    )
    assert result.returncode == 0, result.stderr
    assert "PRIVATE KEY" not in result.stdout and "cli-server-keygen" in result.stdout
    assert mode(key_file) == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    chain = x509.load_pem_x509_certificates(cert_file.read_bytes())
    assert len(chain) >= 2
    assert chain[0].public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "keygen.example.test" in sans.get_values_for_type(x509.DNSName)
    # A key file is never overwritten, and the server is not asked for a certificate whose key has no home.
    again = run(
        live_server,
        tmp_path,
        *ISSUE,
        "--name",
        "cli-other",
        "--cn",
        "o.example.test",
        "--key-out",
        str(key_file),
    )
    assert "refusing to overwrite" in one_error_line(again)
    missing = run(live_server, tmp_path, *ISSUE, "--name", "cli-nokey", "--cn", "n.example.test")
    assert "--key-out" in one_error_line(missing, exit_code=2)


def test_issue_with_local_key_and_csr(live_server: LiveServer, tmp_path: Path) -> None:
    key_file = tmp_path / "local.key"
    answer = ok_json(
        live_server,
        tmp_path,
        *ISSUE,
        "--name",
        "cli-generate-csr",
        "--generate-csr",
        "--key-type",
        "ecdsa-p384",
        "--key-out",
        str(key_file),
        "--cn",
        "local.example.test",
    )
    assert mode(key_file) == 0o600
    assert "private_key_pem" not in answer and answer["current_version"]["has_key"] is False
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    cert = x509.load_pem_x509_certificate(answer["current_version"]["cert_pem"].encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert answer["sans"] == ["local.example.test"]

    own_key = generate_private_key("ecdsa-p256")
    csr_file = tmp_path / "own.csr"
    csr = build_csr(own_key, common_name="own.example.test", dns_names=["own.example.test"])
    csr_file.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    own = ok_json(live_server, tmp_path, *ISSUE, "--name", "cli-own-csr", "--csr", str(csr_file))
    cert = x509.load_pem_x509_certificate(own["current_version"]["cert_pem"].encode())
    assert cert.public_key() == own_key.public_key()

    # A refused request leaves no orphan key file behind.
    orphan = tmp_path / "orphan.key"
    refused = run(
        live_server,
        tmp_path,
        *ISSUE,
        "--name",
        "cli-generate-csr",
        "--generate-csr",
        "--key-out",
        str(orphan),
        "--cn",
        "dup.example.test",
    )
    assert one_error_line(refused).startswith("error: 409 ")
    assert not orphan.exists()


def test_list_get_update_renew_versions(live_server: LiveServer, tmp_path: Path) -> None:
    for index in range(3):
        ok(
            live_server,
            tmp_path,
            *ISSUE,
            "--name",
            f"cli-inv-{index}",
            "--cn",
            f"inv{index}.example.test",
            "--key-out",
            str(tmp_path / f"inv{index}.key"),
            "--environment",
            "staging",
        )
    page = ok_json(live_server, tmp_path, "certs", "list", "--search", "cli-inv-", "--limit", "2")
    assert len(page["items"]) == 2 and page["next_cursor"]
    everything = ok_json(
        live_server, tmp_path, "certs", "list", "--search", "cli-inv-", "--limit", "1", "--all"
    )
    assert sorted(c["name"] for c in everything["items"]) == ["cli-inv-0", "cli-inv-1", "cli-inv-2"]
    newest_first = ok_json(
        live_server,
        tmp_path,
        "certs",
        "list",
        "--environment",
        "staging",
        "--sort",
        "-name",
        "--status",
        "Active",
    )
    mine = [c["name"] for c in newest_first["items"] if c["name"].startswith("cli-inv-")]
    assert mine == ["cli-inv-2", "cli-inv-1", "cli-inv-0"]
    table = ok(live_server, tmp_path, "certs", "list", "--search", "cli-inv-")
    assert "cli-inv-1" in table and "inv1.example.test" in table

    got = ok_json(live_server, tmp_path, "certs", "get", "cli-inv-0")
    first_serial = got["current_version"]["serial"]
    assert ok(live_server, tmp_path, "certs", "get", got["id"]).count(first_serial) == 1

    updated = ok_json(
        live_server, tmp_path, "certs", "update", "cli-inv-0", "--tag", "tier=gold", "--no-auto-renew"
    )
    assert updated["tags"] == {"tier": "gold"} and updated["auto_renew"] is False

    renewed = ok_json(live_server, tmp_path, "certs", "renew", "cli-inv-0")
    assert renewed["current_version"]["serial"] != first_serial
    versions = ok_json(live_server, tmp_path, "certs", "versions", "cli-inv-0")["items"]
    assert {v["serial"] for v in versions} == {first_serial, renewed["current_version"]["serial"]}

    archived = ok_json(live_server, tmp_path, "certs", "archive", "cli-inv-2")
    assert archived["status"] == "Archived"
    gone = run(live_server, tmp_path, "certs", "get", "no-such-certificate")
    assert one_error_line(gone).startswith("error: 404 ")


def test_export_pem_and_pkcs12(live_server: LiveServer, tmp_path: Path) -> None:
    ok(
        live_server,
        tmp_path,
        *ISSUE,
        "--name",
        "cli-export",
        "--cn",
        "export.example.test",
        "--key-out",
        str(tmp_path / "export.key"),
    )
    pem_file = tmp_path / "chain.pem"
    ok(live_server, tmp_path, "certs", "export", "cli-export", "--out", str(pem_file))
    chain = x509.load_pem_x509_certificates(pem_file.read_bytes())
    assert len(chain) >= 2 and b"PRIVATE KEY" not in pem_file.read_bytes()

    password_file = tmp_path / "password"
    password_file.write_text("correct horse battery\n")
    p12_file = tmp_path / "bundle.p12"
    ok(
        live_server,
        tmp_path,
        "certs",
        "export",
        "cli-export",
        "--format",
        "pkcs12",
        "--include-key",
        "--password-file",
        str(password_file),
        "--out",
        str(p12_file),
    )
    assert mode(p12_file) == 0o600
    key, cert, extra = pkcs12.load_key_and_certificates(p12_file.read_bytes(), b"correct horse battery")
    assert key is not None and cert is not None and extra
    original = serialization.load_pem_private_key((tmp_path / "export.key").read_bytes(), password=None)
    assert private_key_to_pem(key) == private_key_to_pem(original)  # type: ignore[arg-type]

    no_password = run(
        live_server,
        tmp_path,
        "certs",
        "export",
        "cli-export",
        "--format",
        "pkcs12",
        "--include-key",
        "--out",
        str(tmp_path / "x.p12"),
    )
    assert "--password-file" in one_error_line(no_password, exit_code=2)


def test_api_key_create_rotate_revoke(live_server: LiveServer, tmp_path: Path) -> None:
    created = run(live_server, tmp_path, "keys", "create", "--name", "cli-ops", "--role", "operator")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert created.stdout == secret + "\n" and " " not in secret
    me = ok_json(live_server, tmp_path, "whoami", key=secret)
    assert me["name"] == "cli-ops" and me["roles"] == ["operator"]
    key_id = me["id"]
    assert any(k["id"] == key_id for k in ok_json(live_server, tmp_path, "keys", "list")["items"])

    rotated = ok_json(live_server, tmp_path, "keys", "rotate", key_id)
    new_secret = rotated["secret"]
    assert new_secret != secret and rotated["key"]["id"] == key_id
    old = run(live_server, tmp_path, "whoami", key=secret)
    assert one_error_line(old).startswith("error: 401 ")
    assert ok_json(live_server, tmp_path, "whoami", key=new_secret)["id"] == key_id

    ok(live_server, tmp_path, "keys", "revoke", key_id)
    revoked = run(live_server, tmp_path, "certs", "list", key=new_secret)
    line = one_error_line(revoked)
    assert line.startswith("error: 401 ") and new_secret not in revoked.stderr + revoked.stdout


def test_policy_and_input_errors_are_one_line(live_server: LiveServer, tmp_path: Path) -> None:
    too_long = run(
        live_server,
        tmp_path,
        *ISSUE,
        "--name",
        "cli-too-long",
        "--cn",
        "long.example.test",
        "--validity-days",
        "5000",
        "--key-out",
        str(tmp_path / "long.key"),
    )
    assert one_error_line(too_long).startswith("error: 422 ")
    assert not (tmp_path / "long.key").exists()

    missing_csr = run(live_server, tmp_path, *ISSUE, "--name", "cli-x", "--csr", str(tmp_path / "nope.csr"))
    assert "nope.csr" in one_error_line(missing_csr)
    garbage = tmp_path / "garbage.csr"
    garbage.write_text("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
    bad_csr = run(live_server, tmp_path, *ISSUE, "--name", "cli-x", "--csr", str(garbage))
    assert one_error_line(bad_csr).startswith("error: 422 ")
    assert run(live_server, tmp_path, "certs", "list", "--output", "yaml").returncode == 2


def test_unreachable_or_untrusted_server_is_one_line(live_server: LiveServer, tmp_path: Path) -> None:
    port = free_port()
    down = run(live_server, tmp_path, "certs", "list", server=f"https://127.0.0.1:{port}")
    assert one_error_line(down) == f"error: cannot reach https://127.0.0.1:{port}: connection refused"
    assert live_server.admin_key not in down.stderr

    untrusted = run(live_server, tmp_path, "certs", "list", trust=False)
    assert "TLS verification failed" in one_error_line(untrusted)


def test_catalogue_and_hierarchy_commands(live_server: LiveServer, tmp_path: Path) -> None:
    team = ok_json(live_server, tmp_path, "teams", "create", "--name", "cli-team", "--description", "ops")
    owner = ok_json(
        live_server,
        tmp_path,
        "owners",
        "create",
        "--name",
        "cli-owner",
        "--email",
        "o@example.test",
        "--team",
        "cli-team",
    )
    assert owner["team_id"] == team["id"]
    assert "cli-owner" in ok(live_server, tmp_path, "owners", "list")

    profile = ok_json(
        live_server,
        tmp_path,
        "profiles",
        "create",
        "--name",
        "cli-short",
        "--max-ttl-days",
        "30",
        "--key-algorithm",
        "ecdsa",
        "--san-pattern",
        "*.short.test",
        "--no-allow-server-keygen",
    )
    rules = profile["rules"]
    assert rules["max_ttl_seconds"] == 30 * 86400 and rules["default_ttl_seconds"] == 30 * 86400
    assert rules["allowed_key_algorithms"] == ["ECDSA"] and rules["allow_server_keygen"] is False
    updated = ok_json(live_server, tmp_path, "profiles", "update", "cli-short", "--default-ttl-days", "7")
    assert updated["rules"]["default_ttl_seconds"] == 7 * 86400 and updated["rules"]["san_patterns"] == [
        "*.short.test"
    ]

    sub = ok_json(
        live_server,
        tmp_path,
        "cas",
        "create",
        "--name",
        "cli-sub",
        "--cn",
        "CLI Sub CA",
        "--parent",
        "Test Root",
        "--path-length",
        "0",
        "--permit-dns",
        "short.test",
    )
    assert sub["status"] == "active"
    issuer = ok_json(
        live_server,
        tmp_path,
        "issuers",
        "create",
        "--name",
        "cli-issuer",
        "--type",
        "local",
        "--option",
        "ca=cli-sub",
    )
    assert issuer["options"] == {"ca": sub["id"]}
    assert ok_json(live_server, tmp_path, "issuers", "test", "cli-issuer")["ok"] is True

    csr_key = tmp_path / "short.key"
    issued = ok_json(
        live_server,
        tmp_path,
        "certs",
        "issue",
        "--name",
        "cli-short-cert",
        "--issuer",
        "cli-issuer",
        "--profile",
        "cli-short",
        "--generate-csr",
        "--key-out",
        str(csr_key),
        "--cn",
        "a.short.test",
        "--owner",
        "cli-owner",
        "--team",
        "cli-team",
    )
    assert issued["owner_id"] == owner["id"]
    outside = run(
        live_server,
        tmp_path,
        "certs",
        "issue",
        "--name",
        "cli-outside",
        "--issuer",
        "cli-issuer",
        "--profile",
        "cli-short",
        "--generate-csr",
        "--key-out",
        str(tmp_path / "out.key"),
        "--cn",
        "a.other.test",
    )
    assert one_error_line(outside).startswith("error: 422 ")

    assert ok_json(live_server, tmp_path, "cas", "drain", "cli-sub")["status"] == "draining"
    failing = run(live_server, tmp_path, "issuers", "test", "cli-issuer")
    assert failing.returncode == 1 and "ca-active" in failing.stderr
    assert ok_json(live_server, tmp_path, "cas", "activate", "cli-sub")["status"] == "active"
    assert "cli-sub" in ok(live_server, tmp_path, "cas", "list")

    in_use = run(live_server, tmp_path, "owners", "delete", "cli-owner")
    assert one_error_line(in_use).startswith("error: 409 ")
    ok(live_server, tmp_path, "teams", "create", "--name", "cli-spare")
    ok(live_server, tmp_path, "teams", "delete", "cli-spare")
    assert "cli-spare" not in ok(live_server, tmp_path, "teams", "list")


def test_audit_list_and_export(live_server: LiveServer, tmp_path: Path) -> None:
    ok(
        live_server,
        tmp_path,
        *ISSUE,
        "--name",
        "cli-audited",
        "--cn",
        "audited.example.test",
        "--key-out",
        str(tmp_path / "audited.key"),
    )
    events = ok_json(
        live_server, tmp_path, "audit", "list", "--action", "certificate.issue", "--limit", "500"
    )
    assert any(e["details"].get("name") == "cli-audited" for e in events["items"])
    assert "certificate.issue" in ok(live_server, tmp_path, "audit", "list", "--limit", "5")

    jsonl, csv_file = tmp_path / "audit.jsonl", tmp_path / "audit.csv"
    ok(live_server, tmp_path, "audit", "export", "--out", str(jsonl))
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert any(r["action"] == "certificate.issue" for r in rows)
    ok(live_server, tmp_path, "audit", "export", "--format", "csv", "--out", str(csv_file))
    assert csv_file.read_text().splitlines()[0].startswith("event_id,")
