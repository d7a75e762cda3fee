"""``certctl server`` as a real process: listeners, TLS floor, AIA over plain HTTP, start-up refusals."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from support.live import LiveServer, certctl_command, free_port


def test_health_ready_and_metrics(live_server: LiveServer) -> None:
    trust = ssl.create_default_context(cafile=str(live_server.ca_bundle))
    with httpx2.Client(base_url=live_server.url, verify=trust) as anonymous:
        assert anonymous.get("/health").json() == {"status": "healthy"}
        assert anonymous.get("/ready").json()["status"] == "ready"
        assert anonymous.get("/metrics").status_code == 401
    with live_server.client() as client:
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert "certctl_http_requests_total" in metrics.text


@pytest.mark.peer("openssl")
def test_tls_13_is_the_floor(live_server: LiveServer) -> None:
    host_port = live_server.url.removeprefix("https://")
    old = subprocess.run(
        ["openssl", "s_client", "-connect", host_port, "-tls1_2", "-CAfile", str(live_server.ca_bundle)],
        input="", capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert old.returncode != 0
    new = subprocess.run(
        ["openssl", "s_client", "-connect", host_port, "-tls1_3", "-CAfile", str(live_server.ca_bundle),
         "-verify_return_error"],
        input="", capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert new.returncode == 0, new.stdout + new.stderr
    assert "TLSv1.3" in new.stdout


def test_aia_serves_the_issuing_ca_over_plain_http(live_server: LiveServer) -> None:
    with live_server.client() as client:
        issued = client.post(
            "/api/v1/certificates",
            json={
                "name": "aia.example.com",
                "issuer": "local",
                "profile": "default",
                "common_name": "aia.example.com",
            },
        ).json()
    leaf = x509.load_pem_x509_certificate(issued["current_version"]["cert_pem"].encode())
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    by_method = {d.access_method: d.access_location.value for d in aia}
    assert by_method[AuthorityInformationAccessOID.OCSP] == f"{live_server.http_url}/ocsp"
    url = by_method[AuthorityInformationAccessOID.CA_ISSUERS]
    assert url.startswith(live_server.http_url)
    answer = httpx2.get(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/pkix-cert"
    issuer_cert = x509.load_der_x509_certificate(answer.content)
    leaf.verify_directly_issued_by(issuer_cert)
    assert httpx2.get(f"{live_server.http_url}/api/v1/certificates").status_code == 404


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = os.environ | {
        "CERTCTL_DATA_DIR": str(data_dir),
        "CERTCTL_LISTEN": f"127.0.0.1:{free_port()}",
        "CERTCTL_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
    }
    env.pop("CERTCTL_DATABASE_URL", None)
    return env | extra


def _server_fails(env: dict[str, str]) -> str:
    result = subprocess.run(
        [*certctl_command(), "server"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_unusable_tls_material_is_refused_clearly(tmp_path: Path, live_server: LiveServer) -> None:
    other_key = tmp_path / "other.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                    str(other_key)], check=True, capture_output=True)  # fmt: skip
    tls = live_server.data_dir / "tls"
    line = _server_fails(
        _env(
            tmp_path / "d1",
            CERTCTL_TLS_CERT_FILE=str(tls / "server.crt"),
            CERTCTL_TLS_KEY_FILE=str(other_key),
        )
    )
    assert line.startswith("error: TLS key") and "does not match" in line
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    line = _server_fails(
        _env(tmp_path / "d2", CERTCTL_TLS_CERT_FILE=str(garbage), CERTCTL_TLS_KEY_FILE=str(other_key))
    )
    assert line.startswith("error: TLS certificate")


def test_placeholder_bootstrap_token_and_taken_port_are_refused(
    tmp_path: Path, live_server: LiveServer
) -> None:
    line = _server_fails(_env(tmp_path / "d3", CERTCTL_BOOTSTRAP_TOKEN="changeme"))
    assert "bootstrap_token" in line
    taken = live_server.url.removeprefix("https://")
    line = _server_fails(_env(tmp_path / "d4", CERTCTL_LISTEN=taken))
    assert line.startswith("error: cannot listen on")


def test_admin_create_key_prints_only_the_key(tmp_path: Path) -> None:
    env = _env(tmp_path / "d5")
    result = subprocess.run(
        [*certctl_command(), "admin", "create-key", "--name", "ops", "--role", "operator"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("cctl_")
    bad = subprocess.run(
        [*certctl_command(), "admin", "create-key", "--name", "x", "--role", "emperor"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: unknown role(s): emperor"


def test_world_readable_master_key_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "d6"
    data.mkdir()
    key = data / "master.key"
    key.write_text("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
    key.chmod(0o644)
    line = _server_fails(_env(data))
    assert "chmod 600" in line
