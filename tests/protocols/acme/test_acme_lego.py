"""Real ``lego`` against a real ``certctl server`` process: http-01 issuance (lego's standalone responder
on a loopback port, names resolved by pebble-challtestsrv), renewal and revocation."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from certctl.domain.lifecycle import CertificateStatus
from support.acme_client import start_challtestsrv
from support.live import LiveServer, free_port, start_live_server

pytestmark = [pytest.mark.peer("lego"), pytest.mark.peer("pebble-challtestsrv")]
NAME = "lego.example.test"


@pytest.fixture(scope="module")
def acme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, int]]:
    process, resolver = start_challtestsrv()
    http01_port = free_port()
    try:
        server = start_live_server(
            tmp_path_factory.mktemp("acme-live"),
            extra_env={"CERTCTL_ACME_HTTP01_PORT": str(http01_port), "CERTCTL_ACME_DNS_RESOLVER": resolver},
        )
        try:
            yield server, http01_port
        finally:
            server.stop()
    finally:
        process.terminate()
        process.wait(timeout=10)


def _lego(server: LiveServer, port: int, path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    argv = [
        "lego",
        "--server",
        f"{server.url}/acme/directory",
        "--email",
        "a@example.com",
        "--accept-tos",
        "--domains",
        NAME,
        "--http",
        "--http.port",
        f"127.0.0.1:{port}",
        "--path",
        str(path),
        *command,
    ]
    env = os.environ | {"LEGO_CA_CERTIFICATES": str(server.ca_bundle)}
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr + server.log_file.read_text()[-3000:]
    return result


def _leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates((path / "certificates" / f"{NAME}.crt").read_bytes())[0]


def test_lego_run_renew_revoke(acme_server: tuple[LiveServer, int], tmp_path: Path) -> None:
    server, port = acme_server
    _lego(server, port, tmp_path, "run")
    first = _leaf(tmp_path)
    names = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [NAME]
    _lego(server, port, tmp_path, "renew", "--days", "400", "--no-random-sleep")
    second = _leaf(tmp_path)
    assert second.serial_number != first.serial_number
    _lego(server, port, tmp_path, "revoke")
    with server.client() as client:
        found = client.get("/api/v1/certificates", params={"source": "acme"}).json()["items"]
    revoked = [c for c in found if c["status"] == str(CertificateStatus.REVOKED)]
    assert len(found) == 2 and len(revoked) == 1 and not any(c["auto_renew"] for c in found)
