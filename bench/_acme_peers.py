"""What the ACME bench runs beside the CAs: the http-01 responder, pebble-challtestsrv and Pebble.

- :class:`Responder` is an asyncio HTTP/1.1 server on the validation port that answers
  ``/.well-known/acme-challenge/<token>`` from a dict the bench fills (key authorizations are known to
  the client, so no files are written). It runs in the bench's event loop; its CPU counts as client CPU.
- ``pebble-challtestsrv`` is the DNS both CAs resolve names through: every name answers 127.0.0.1.
- Pebble, the reference ACME CA, with a self-signed listener certificate (SAN IP:127.0.0.1), validating
  http-01 on the responder's port, or not validating at all (``PEBBLE_VA_ALWAYS_VALID=1``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from _server import free_port

PREFIX = b"/.well-known/acme-challenge/"


class Responder:
    """http-01 answers for the tokens in :attr:`tokens` (token -> key authorization)."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.served = 0
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        self.port = port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b""
            body = self.tokens.get(path.removeprefix(PREFIX).decode(errors="replace"))
            status = b"200 OK" if body is not None and path.startswith(PREFIX) else b"404 Not Found"
            payload = (body or "").encode()
            self.served += body is not None
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def challenge_dns(workdir: Path) -> Iterator[str]:
    """``pebble-challtestsrv`` as DNS only; yields its ``host:port``."""
    port, management = free_port(), free_port()
    argv = ["pebble-challtestsrv", "-http01", "", "-https01", "", "-tlsalpn01", ""]
    argv += ["-dns01", f"127.0.0.1:{port}", "-management", f"127.0.0.1:{management}"]
    argv += ["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]
    with (workdir / "challtestsrv.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_port(management, process, "pebble-challtestsrv")
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


def _listener_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 that is its own trust anchor; (certificate, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench pebble listener")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "pebble.crt", directory / "pebble.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass(frozen=True)
class RunningPebble:
    directory_url: str
    ca_file: Path
    pid: int


@contextmanager
def pebble(workdir: Path, *, http01_port: int, dns: str, always_valid: bool) -> Iterator[RunningPebble]:
    """Pebble without its deliberate nonce rejections and validation sleeps."""
    workdir.mkdir(parents=True, exist_ok=True)
    cert, key = _listener_certificate(workdir / "tls")
    port, management = free_port(), free_port()
    settings = {
        "listenAddress": f"127.0.0.1:{port}",
        "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(cert),
        "privateKey": str(key),
        "httpPort": http01_port,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
    config = workdir / "pebble.json"
    config.write_text(json.dumps({"pebble": settings}))
    env = os.environ | {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    if always_valid:
        env["PEBBLE_VA_ALWAYS_VALID"] = "1"
    with (workdir / "pebble.log").open("wb") as log:
        process = subprocess.Popen(
            ["pebble", "-config", str(config), "-dnsserver", dns],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        _wait_port(port, process, "pebble")
        _wait_port(management, process, "pebble")
        yield RunningPebble(f"https://127.0.0.1:{port}/dir", cert, process.pid)
    finally:
        _stop(process)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants, from /proc (0 once it is gone)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return total
