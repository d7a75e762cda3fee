"""certbot against a live certctl server whose profile requires external account binding (RFC 8555
§7.3.4) and trusts bound accounts: refused without ``--eab-kid``/``--eab-hmac-key``, issued with them
(no challenge is served). The EAB key comes from ``certctl acme eab create``.

And certbot renewing when ACME Renewal Information (RFC 9773) says so: a fresh certificate is "not yet
due"; after an operator asks for every certificate of the issuer to be renewed by a deadline
(``renew-by``), ``certbot renew`` reads the moved window from ``renewalInfo`` and renews."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from support.cli import ok, ok_json
from support.live import LiveServer

pytestmark = pytest.mark.peer("certbot")


@pytest.fixture(scope="module")
def live(eab_live: LiveServer) -> LiveServer:
    return eab_live


def _certbot(live: LiveServer, work: Path, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = ["certbot", "--non-interactive", "--config-dir", str(work / "config")]
    argv += ["--work-dir", str(work / "work"), "--logs-dir", str(work / "logs")]
    webroot = work.parent / "webroot"
    argv += ["certonly", "--webroot", "-w", str(webroot), "-d", name]
    argv += ["--server", f"{live.url}/acme/internal/directory"]
    argv += ["--register-unsafely-without-email", "--agree-tos", *extra]
    env = os.environ | {"REQUESTS_CA_BUNDLE": str(live.ca_bundle)}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_certbot_needs_the_binding(live: LiveServer, tmp_path: Path) -> None:
    name = f"svc-{secrets.token_hex(4)}.corp.test"
    (tmp_path / "webroot").mkdir()
    refused = _certbot(live, tmp_path / "without", name)
    assert refused.returncode != 0
    assert "external account" in (refused.stdout + refused.stderr).lower()

    created = ok(live, tmp_path, "acme", "eab", "create", "--profile", "internal", "--name", "certbot")
    fields = dict(line.split(": ", 1) for line in created.strip().splitlines())
    assert set(fields) == {"kid", "hmac_key"}
    issued = _certbot(
        live,
        tmp_path / "with",
        name,
        f"--eab-kid={fields['kid']}",
        f"--eab-hmac-key={fields['hmac_key']}",  # one argument: a base64url key may start with "-"
    )
    assert issued.returncode == 0, issued.stdout + issued.stderr
    leaf = x509.load_pem_x509_certificate(
        (tmp_path / "with" / "config" / "live" / name / "cert.pem").read_bytes()
    )
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [name]

    listed = ok_json(live, tmp_path, "acme", "eab", "list", "--profile", "internal")["items"]
    assert [(k["kid"], k["account_id"] is not None) for k in listed] == [(fields["kid"], True)]
    assert "hmac_key" not in listed[0]
    assert fields["kid"] in ok(live, tmp_path, "acme", "eab", "list")
    revoked = ok_json(live, tmp_path, "acme", "eab", "revoke", fields["kid"])
    assert revoked["revoked_at"]


def _run_certbot(live: LiveServer, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["certbot", "--non-interactive", "--config-dir", str(work / "config")]
    argv += ["--work-dir", str(work / "work"), "--logs-dir", str(work / "logs"), *args]
    env = os.environ | {"REQUESTS_CA_BUNDLE": str(live.ca_bundle)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _forget_ari_retry(work: Path, name: str) -> None:
    """certbot asks for renewal information again only after the Retry-After it stored (6 h): drop
    that note, as if the time had passed."""
    conf = work / "config" / "renewal" / f"{name}.conf"
    text = conf.read_text()
    assert "ari_retry_after" in text  # certbot did read the window
    conf.write_text(re.sub(r"(?m)^ari_retry_after = .*\n", "", text))


def test_certbot_renews_when_renewal_info_says_so(live: LiveServer, tmp_path: Path) -> None:
    name = f"ari-{secrets.token_hex(4)}.corp.test"
    (tmp_path / "webroot").mkdir()
    created = ok(live, tmp_path, "acme", "eab", "create", "--profile", "internal", "--name", "ari")
    fields = dict(line.split(": ", 1) for line in created.strip().splitlines())
    _run_certbot(
        live,
        tmp_path,
        "certonly",
        "--webroot",
        "-w",
        str(tmp_path / "webroot"),
        "-d",
        name,
        "--server",
        f"{live.url}/acme/internal/directory",
        "--register-unsafely-without-email",
        "--agree-tos",
        f"--eab-kid={fields['kid']}",
        f"--eab-hmac-key={fields['hmac_key']}",  # one argument: a base64url key may start with "-"
    )
    archive = tmp_path / "config" / "archive" / name
    first = x509.load_pem_x509_certificate((archive / "cert1.pem").read_bytes())

    not_due = _run_certbot(live, tmp_path, "renew", "--no-random-sleep-on-renew")
    assert "not yet due" in not_due.stdout + not_due.stderr
    assert not (archive / "cert2.pem").exists()

    by = datetime.now(UTC) + timedelta(seconds=2)
    with live.client() as client:
        moved = client.post("/api/v1/issuers/local/renew-by", json={"by": by.isoformat()})
    assert moved.status_code == 200, moved.text
    assert moved.json()["certificates"] >= 1
    time.sleep(max(0.0, (by - datetime.now(UTC)).total_seconds()) + 1.0)
    _forget_ari_retry(tmp_path, name)

    due = _run_certbot(live, tmp_path, "renew", "--no-random-sleep-on-renew")
    assert "(success)" in due.stdout
    log = (tmp_path / "logs" / "letsencrypt.log").read_text()
    assert "/acme/internal/renewal-info/" in log
    assert "Certificate is due for renewal" in log
    second = x509.load_pem_x509_certificate((archive / "cert2.pem").read_bytes())
    assert second.serial_number != first.serial_number
    names = second.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [name]
