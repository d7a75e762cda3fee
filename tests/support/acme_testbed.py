"""The loopback ACME test bed: Pebble, a challenge DNS, the http-01 responder and system trust.

What an ACME interop test needs around the client under test. Everything listens on free 127.0.0.1
ports and is stopped by PID.

- ``pebble-challtestsrv`` is the DNS the CA under test resolves through: every name answers 127.0.0.1.
- :class:`ChallengeResponder` owns the port the CA validates http-01 on (RFC 8555 §8.3). It serves
  ``<webroot>/.well-known/acme-challenge/<token>`` for the webroot clients, and forwards requests for a
  name that a daemon answers itself (Caddy, Apache mod_md) to that daemon's http port, by Host header.
- Pebble, the reference ACME CA, with a listener certificate of its own (SAN IP:127.0.0.1).
- :func:`system_trust` for clients whose TLS library reads only the system store.
"""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support.material import TestCa

CHALLENGE_PATH = "/.well-known/acme-challenge/"
COMMAND_SECONDS = 120
DAEMON_SECONDS = 60
SYSTEM_CA_DIR = Path("/usr/local/share/ca-certificates")
SYSTEM_CA_PREFIX = "certctl-test-acme-"
SYSTEM_CA_LOCK = Path(tempfile.gettempdir()) / "certctl-test-system-ca.lock"
PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.DOTALL)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """End a child by its PID: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn(argv: list[str], *, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a daemon in the background, its output appended to ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )


def run_command(argv: list[str], *, env: dict[str, str] | None = None) -> str:
    """Run a client command to completion; a failure carries the tail of its output."""
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=COMMAND_SECONDS, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError(f"{shlex.join(argv[:3])} ... exited {result.returncode}:\n{output}")
    return result.stdout


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


def wait_until(
    condition: Callable[[], bool], *, what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll ``condition`` until true; fail early with the log when ``process`` dies."""
    deadline = time.monotonic() + DAEMON_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what}: process exited {process.returncode}:\n{log_tail(log)}")
        if condition():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out waiting for {what}:\n{log_tail(log)}")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class _ChallengeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, webroot: Path) -> None:
        super().__init__(("127.0.0.1", 0), _ChallengeHandler)
        self.webroot = webroot
        self.routes: dict[str, int] = {}


class _ChallengeHandler(BaseHTTPRequestHandler):
    server: _ChallengeServer

    def do_GET(self) -> None:
        if not self.path.startswith(CHALLENGE_PATH):
            self.send_error(404)
            return
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        port = self.server.routes.get(host)
        if port is not None:
            self._forward(host, port)
            return
        token = self.path.removeprefix(CHALLENGE_PATH)
        answer = self.server.webroot / CHALLENGE_PATH.strip("/") / token
        if not re.fullmatch(r"[A-Za-z0-9_-]+", token) or not answer.is_file():
            self.send_error(404)
            return
        self._reply(200, answer.read_bytes())

    def _forward(self, host: str, port: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", self.path, headers={"Host": host})
            response = connection.getresponse()
            self._reply(response.status, response.read())
        except OSError:
            self.send_error(502)
        finally:
            connection.close()

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests read outcomes, not access logs."""


@dataclass
class ChallengeResponder:
    """The http-01 validation port: a webroot, plus per-name forwarding to daemons that answer themselves."""

    webroot: Path
    _server: _ChallengeServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def challenge_dir(self) -> Path:
        return self.webroot / CHALLENGE_PATH.strip("/")

    @contextmanager
    def route(self, name: str, port: int) -> Iterator[None]:
        """While the block runs, challenges for ``name`` go to 127.0.0.1:``port``."""
        self._server.routes[name.lower()] = port
        try:
            yield
        finally:
            self._server.routes.pop(name.lower(), None)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


def start_challenge_responder(webroot: Path) -> ChallengeResponder:
    (webroot / CHALLENGE_PATH.strip("/")).mkdir(parents=True, exist_ok=True)
    server = _ChallengeServer(webroot)
    thread = threading.Thread(target=server.serve_forever, name="acme-http-01", daemon=True)
    thread.start()
    return ChallengeResponder(webroot=webroot, _server=server, _thread=thread)


@dataclass
class ChallengeDns:
    """``pebble-challtestsrv`` answering every A query with 127.0.0.1 (no AAAA, no challenge servers)."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.process)


def start_challenge_dns(workdir: Path) -> ChallengeDns:
    workdir.mkdir(parents=True, exist_ok=True)
    port, management = free_port(), free_port()
    argv = ["pebble-challtestsrv", "-http01", "", "-https01", "", "-tlsalpn01", ""]
    argv += ["-dns01", f"127.0.0.1:{port}", "-management", f"127.0.0.1:{management}"]
    argv += ["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]
    log = workdir / "challtestsrv.log"
    process = spawn(argv, log=log)
    dns = ChallengeDns(port=port, process=process)
    try:
        wait_until(
            lambda: _accepts(port) and _accepts(management), what="challtestsrv", process=process, log=log
        )
    except BaseException:
        dns.stop()
        raise
    return dns


@dataclass
class Pebble:
    """Pebble serving ``directory_url`` over TLS that ``ca_bundle`` trusts; it issues under ``roots``."""

    directory_url: str
    ca_bundle: Path
    roots: Path
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


def _https_get(url: str, ca_bundle: Path) -> bytes:
    context = ssl.create_default_context(cafile=str(ca_bundle))
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        body: bytes = response.read()
        return body


def start_pebble(workdir: Path, *, http01_port: int, dns: ChallengeDns) -> Pebble:
    """Pebble with its own listener certificate (SAN IP:127.0.0.1), validating http-01 on ``http01_port``."""
    listener = TestCa(workdir / "tls")
    material = listener.material("127.0.0.1", "localhost")
    (workdir / "tls" / "pebble.crt").write_text(material.fullchain_pem)
    key = workdir / "tls" / "pebble.key"
    key.touch(mode=0o600)
    key.write_text(material.private_key_pem)
    port, management = free_port(), free_port()
    settings = {
        "listenAddress": f"127.0.0.1:{port}",
        "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(workdir / "tls" / "pebble.crt"),
        "privateKey": str(key),
        "httpPort": http01_port,
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }
    config = workdir / "pebble.json"
    config.write_text(json.dumps({"pebble": settings}))
    env = os.environ | {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    log = workdir / "pebble.log"
    process = spawn(["pebble", "-config", str(config), "-dnsserver", dns.resolver], log=log, env=env)
    pebble = Pebble(f"https://127.0.0.1:{port}/dir", listener.ca_file, workdir / "roots.pem", process, log)
    try:
        wait_until(lambda: _accepts(port) and _accepts(management), what="pebble", process=process, log=log)
        pebble.roots.write_bytes(_https_get(f"https://127.0.0.1:{management}/roots/0", listener.ca_file))
    except BaseException:
        pebble.stop()
        raise
    return pebble


def _drop_orphaned_anchors() -> None:
    """Remove anchors left by test processes that died before their cleanup could run."""
    for anchor in SYSTEM_CA_DIR.glob(f"{SYSTEM_CA_PREFIX}*.crt"):
        owner = int(anchor.name.removeprefix(SYSTEM_CA_PREFIX).split("-")[0])
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            anchor.unlink(missing_ok=True)


def _change_system_store(change: Callable[[], None]) -> None:
    with SYSTEM_CA_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        change()
        run_command(["update-ca-certificates"])


@contextmanager
def system_trust(ca_file: Path) -> Iterator[None]:
    """Trust ``ca_file`` system-wide while the block runs, and always take it out again.

    For clients whose TLS library reads only the system store (uacme links libcurl-gnutls). Serialised
    by a file lock because parallel test workers share the store.
    """
    anchor = SYSTEM_CA_DIR / f"{SYSTEM_CA_PREFIX}{os.getpid()}-{secrets.token_hex(4)}.crt"

    def add() -> None:
        _drop_orphaned_anchors()
        shutil.copyfile(ca_file, anchor)

    _change_system_store(add)
    try:
        yield
    finally:
        _change_system_store(lambda: anchor.unlink(missing_ok=True))


def served_leaf_pem(*, port: int, server_name: str) -> str | None:
    """The leaf certificate served on 127.0.0.1:``port`` for SNI ``server_name`` (None when none is)."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", server_name]
    try:
        result = subprocess.run(argv, input="", capture_output=True, text=True, timeout=15, check=False)
    except subprocess.TimeoutExpired:
        return None
    match = PEM_CERTIFICATE.search(result.stdout)
    return match.group(0) if match else None


def pem_certificates(path: Path) -> list[str]:
    """The PEM certificates in ``path``, leaf first as ACME delivers them (RFC 8555 §7.4.2)."""
    return PEM_CERTIFICATE.findall(path.read_text())
