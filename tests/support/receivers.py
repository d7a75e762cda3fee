"""Real loopback peers for notification tests: an HTTP receiver that records what chat, incident and
webhook channels post (and checks webhook signatures), and aiosmtpd SMTP servers (STARTTLS, implicit TLS)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from certctl.domain.notifications import verify_webhook
from certctl.pki.tls import make_bootstrap_tls

WEBHOOK_SECRET = "webhook-secret-" + "9fQ2xLr7"
SMTP_USER, SMTP_PASSWORD = "certctl", "smtp-" + "pw-4kR8"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path.split("?")[0] == path]


@contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    """Answers 202 on every path; ``/webhook`` answers 401 unless the HMAC signature is valid and fresh."""
    receiver = HttpReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = 202
            if self.path.startswith("/webhook") and not verify_webhook(
                secret=WEBHOOK_SECRET.encode(),
                timestamp=self.headers.get("X-Certctl-Timestamp", ""),
                signature=self.headers.get("X-Certctl-Signature", ""),
                body=body,
                now=receiver.now(),
            ):
                status = 401
            else:
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status":"success"}')

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class SmtpServer:
    port: int
    ca_pem: str
    messages: list[bytes] = field(default_factory=list)


class _Mailbox:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self._server.messages.append(envelope.original_content or envelope.content)
        return "250 OK"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    good = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=good)


@contextmanager
def smtp_server(tmp_path: Path, *, implicit_tls: bool) -> Iterator[SmtpServer]:
    """aiosmtpd on loopback with the bootstrap certificate: STARTTLS required (submission, port 587
    style) or implicit TLS (port 465 style); AUTH required either way."""
    material = make_bootstrap_tls(hostnames=["localhost"], ip_addresses=["127.0.0.1"], now=datetime.now(UTC))
    tmp_path.mkdir(parents=True, exist_ok=True)
    cert, key = tmp_path / "smtp.crt", tmp_path / "smtp.key"
    cert.write_bytes(material.server_cert_pem)
    key.write_bytes(material.server_key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpServer(port=free_port(), ca_pem=material.ca_cert_pem.decode())
    options: dict[str, Any] = {"authenticator": _authenticate, "auth_required": True}
    if implicit_tls:
        options |= {"ssl_context": context, "auth_require_tls": False}
    else:
        options |= {"tls_context": context, "require_starttls": True}
    controller = Controller(_Mailbox(server), hostname="127.0.0.1", port=server.port, **options)
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
