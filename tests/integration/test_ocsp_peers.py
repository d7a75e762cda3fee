"""The OCSP responder judged by ``openssl ocsp`` against a real ``certctl server`` on the HTTP listener:
good, revoked with its reason, unknown for a serial never issued, nonce echoed, response verified
against the CA chain (the delegated responder is certified by the issuing CA, RFC 6960 §4.2.2.2).
Also: idle and trickling clients do not hold up other requests."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from support.live import LiveServer


def _issue(server: LiveServer, name: str, folder: Path) -> Path:
    with server.client() as client:
        body = {"name": name, "issuer": "local", "profile": "default", "common_name": name}
        assert client.post("/api/v1/certificates", json=body).status_code == 201
        exported = client.get(f"/api/v1/certificates/{name}/export")
    leaf = x509.load_pem_x509_certificates(exported.content)[0]
    path = folder / f"{name}.pem"
    path.write_bytes(leaf.public_bytes(Encoding.PEM))
    return path


def _cas(server: LiveServer, folder: Path) -> tuple[Path, Path]:
    """(issuing CA, chain file of issuing + root) of the seeded hierarchy."""
    with server.client() as client:
        listed = client.get("/api/v1/intermediates").json()
    items = listed["items"] if isinstance(listed, dict) else listed
    by_name = {item["name"]: item for item in items}
    issuing, root = by_name["Test Issuing"]["cert_pem"], by_name["Test Root"]["cert_pem"]
    (folder / "issuing.pem").write_text(issuing)
    (folder / "chain.pem").write_text(issuing + root)
    return folder / "issuing.pem", folder / "chain.pem"


def _ocsp(server: LiveServer, issuer: Path, chain: Path, *args: str) -> str:
    command = ["openssl", "ocsp", "-issuer", str(issuer), "-url", f"{server.http_url}/ocsp"]
    command += ["-CAfile", str(chain), "-resp_text", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    return done.stdout + done.stderr


@pytest.mark.peer("openssl")
def test_openssl_good_revoked_unknown_and_nonce(live_server: LiveServer, tmp_path: Path) -> None:
    issuer, chain = _cas(live_server, tmp_path)
    leaf = _issue(live_server, "ocsp-peer.example.com", tmp_path)
    good = _ocsp(live_server, issuer, chain, "-cert", str(leaf), "-nonce")
    assert "Response verify OK" in good, good
    assert f"{leaf}: good" in good, good
    assert "WARNING: no nonce in response" not in good
    assert "OCSP Nonce" in good
    with live_server.client() as client:
        revoked = client.post(
            "/api/v1/certificates/ocsp-peer.example.com/revoke", json={"reason": "keyCompromise"}
        )
        assert revoked.status_code == 200, revoked.text
    after = _ocsp(live_server, issuer, chain, "-cert", str(leaf), "-no_nonce")
    assert "Response verify OK" in after, after
    assert f"{leaf}: revoked" in after, after
    assert "Reason: keyCompromise" in after, after
    unknown = _ocsp(live_server, issuer, chain, "-serial", "0x1234567890abcdef")
    assert "Response verify OK" in unknown, unknown
    assert "0x1234567890abcdef: unknown" in unknown, unknown


@pytest.mark.peer("openssl")
def test_openssl_several_certificates_in_one_request(live_server: LiveServer, tmp_path: Path) -> None:
    issuer, chain = _cas(live_server, tmp_path)
    first = _issue(live_server, "ocsp-multi-1.example.com", tmp_path)
    second = _issue(live_server, "ocsp-multi-2.example.com", tmp_path)
    output = _ocsp(live_server, issuer, chain, "-cert", str(first), "-cert", str(second), "-nonce")
    assert "Response verify OK" in output, output
    assert f"{first}: good" in output and f"{second}: good" in output, output


def _answers_promptly(server: LiveServer) -> float:
    started = time.monotonic()
    with httpx2.Client(base_url=server.http_url, timeout=5) as client:
        for _ in range(5):
            assert client.get("/health").status_code == 200
    return time.monotonic() - started


def test_idle_and_trickling_clients_do_not_block_others(live_server: LiveServer) -> None:
    host, port = live_server.http_url.removeprefix("http://").split(":")
    stop = threading.Event()
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(20)]
    for sock in idle[:10]:
        sock.close()

    def trickle() -> None:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            for byte in b"POST /ocsp HTTP/1.1\r\nHost: x\r\n":
                if stop.wait(1.0):
                    return
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    return

    tricklers = [threading.Thread(target=trickle, daemon=True) for _ in range(5)]
    for thread in tricklers:
        thread.start()
    try:
        time.sleep(1.5)
        assert _answers_promptly(live_server) < 2.0
    finally:
        stop.set()
        for sock in idle[10:]:
            sock.close()
        for thread in tricklers:
            thread.join(timeout=5)
