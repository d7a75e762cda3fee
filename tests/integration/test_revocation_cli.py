"""``certctl certs revoke`` and ``bulk-revoke`` against a live server; its CRLs on the plain HTTP listener."""

from __future__ import annotations

from pathlib import Path

import httpx2
from cryptography import x509

from support.cli import ok_json, one_error_line, run
from support.live import LiveServer


def _issue(live: LiveServer, name: str) -> int:
    body = {"name": name, "issuer": "local", "profile": "default", "common_name": name}
    with live.client() as client:
        issued = client.post("/api/v1/certificates", json=body)
    assert issued.status_code == 201, issued.text
    return int(issued.json()["current_version"]["serial"], 16)


def _crl(live: LiveServer, ca_id: str) -> x509.CertificateRevocationList:
    response = httpx2.get(f"{live.http_url}/crl/{ca_id}.crl", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    return x509.load_der_x509_crl(response.content)


def test_revoke_and_bulk_revoke_from_the_cli(live_server: LiveServer, tmp_path: Path) -> None:
    ca_id = ok_json(live_server, tmp_path, "issuers", "get", "local")["options"]["ca"]
    one = _issue(live_server, "cli-revoke-one.example.test")
    revoked = ok_json(
        live_server,
        tmp_path,
        "certs",
        "revoke",
        "cli-revoke-one.example.test",
        "--reason",
        "keyCompromise",
        "--invalidity-date",
        "2026-11-01T00:00:00Z",
    )
    assert revoked["status"] == "Revoked"
    entry = _crl(live_server, ca_id).get_revoked_certificate_by_serial_number(one)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc.day == 1

    again = run(live_server, tmp_path, "certs", "revoke", "cli-revoke-one.example.test")
    assert "already revoked" in one_error_line(again)

    serials = [_issue(live_server, f"cli-bulk-{i}.example.test") for i in range(3)]
    refused = run(live_server, tmp_path, "certs", "bulk-revoke", "--id", "cli-bulk-0.example.test")
    assert "--yes" in one_error_line(refused, exit_code=2)
    names = [f"cli-bulk-{i}.example.test" for i in range(3)]
    id_args = [arg for name in names for arg in ("--id", name)]
    result = run(
        live_server,
        tmp_path,
        "certs",
        "bulk-revoke",
        *id_args,
        "--id",
        "nope",
        "--reason",
        "superseded",
        "--yes",
        "--output",
        "json",
    )
    assert result.returncode == 0, result.stderr
    assert "4/4 ids: revoked 3" in result.stderr
    crl = _crl(live_server, ca_id)
    assert all(crl.get_revoked_certificate_by_serial_number(s) is not None for s in serials)
    rerun = ok_json(live_server, tmp_path, "certs", "bulk-revoke", *id_args, "--yes")
    assert rerun["revoked"] == 0 and rerun["already_revoked"] == 3
