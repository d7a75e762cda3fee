"""Steps of the agent acceptance flow with real processes, shared by the end-to-end target tests.

A test enrols a ``certctl agent`` through its CLI against the live server, runs it with ``run --once``
(a fresh process per step, as cron would), reads the certificate's current version from the API and
compares it with what the endpoint serves, as OpenSSL's own client (or keytool, or the file on disk)
sees it. Fingerprints are lower-case hex SHA-256 of the leaf's DER, as the API reports them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx2

from support.live import LiveServer, certctl_command

AGENT_TIMEOUT_SECONDS = 180
SETTLE_SECONDS = 30.0
_POLL_SECONDS = 0.1
_KEYTOOL_QUICK_START = "-J-XX:TieredStopAtLevel=1"
_KEYTOOL_STORE_TYPES = {"pkcs12": "PKCS12", "jks": "JKS"}


def unique_suffix() -> str:
    """A random suffix for names: the live server is shared by every test of the session."""
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class Agent:
    """An enrolled agent: its name on the server and the state directory its CLI runs with."""

    name: str
    state: Path
    environment: dict[str, str] | None = field(default=None, repr=False)
    """The environment each ``certctl agent`` process gets; None: this process's own."""

    def run(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*certctl_command(), "agent", *arguments, "--state-dir", str(self.state)],
            capture_output=True,
            text=True,
            timeout=AGENT_TIMEOUT_SECONDS,
            check=False,
            env=self.environment,
        )

    def run_once(self) -> subprocess.CompletedProcess[str]:
        """``certctl agent run --once``: one heartbeat, one work cycle; exit 1 if a deployment failed."""
        return self.run("run", "--once")


def enrol_agent(
    live_server: LiveServer,
    client: httpx2.Client,
    directory: Path,
    *,
    name: str,
    proxy: bool = False,
    environment: dict[str, str] | None = None,
) -> Agent:
    """Make a one-time enrolment token through the API and spend it with ``certctl agent enrol``."""
    answer = client.post("/api/v1/agents/enrolment-tokens", json={"name": name, "proxy": proxy})
    assert answer.status_code == 201, answer.text
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "enrolment.token"
    token_file.write_text(answer.json()["token"])
    token_file.chmod(0o600)
    agent = Agent(name=name, state=directory / "agent-state", environment=environment)
    enrolled = agent.run(
        "enrol",
        "--server",
        live_server.url,
        "--token-file",
        str(token_file),
        "--ca-bundle",
        str(live_server.ca_bundle),
    )
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    return agent


def current_fingerprint(client: httpx2.Client, certificate_id: str) -> str:
    """The SHA-256 of the certificate's current version, from the API's versions list."""
    certificate = client.get(f"/api/v1/certificates/{certificate_id}").json()
    versions = client.get(f"/api/v1/certificates/{certificate_id}/versions").json()["items"]
    [current] = [v for v in versions if v["id"] == certificate["current_version_id"]]
    return str(current["fingerprint_sha256"])


def pem_fingerprint(pem: bytes) -> str:
    """The first certificate in ``pem`` as ``openssl x509`` fingerprints it ("" when there is none)."""
    shown = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256"],
        input=pem,
        capture_output=True,
        timeout=30,
        check=False,
    )
    if shown.returncode != 0:
        return ""
    return shown.stdout.decode().split("=", 1)[1].strip().replace(":", "").lower()


def served_fingerprint(
    port: int, *, server_name: str | None = None, starttls: Literal["smtp", "imap"] | None = None
) -> str:
    """The leaf served on 127.0.0.1:``port``, read with ``openssl s_client`` ("" when none was)."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    if server_name is not None:
        argv += ["-servername", server_name]
    if starttls is not None:
        argv += ["-starttls", starttls]
    try:
        handshake = subprocess.run(argv, input=b"", capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return ""
    return pem_fingerprint(handshake.stdout)


def file_fingerprint(path: Path) -> str:
    """The leaf at the start of a PEM file ("" when the file is missing)."""
    try:
        return pem_fingerprint(path.read_bytes())
    except FileNotFoundError:
        return ""


def named_file_fingerprint(document: Path, pick: Callable[[Any], str]) -> str:
    """The leaf in the certificate file that a JSON configuration names (``#`` comment lines allowed),
    as a file-watching proxy would load it; ``pick`` finds the file name in the parsed document."""
    if not document.exists():
        return ""
    lines = [line for line in document.read_text().splitlines() if not line.startswith("#")]
    return file_fingerprint(Path(pick(json.loads("\n".join(lines)))))


def keystore_fingerprints(path: Path, *, store_format: str, password: str) -> dict[str, str]:
    """Alias -> leaf SHA-256 of each entry, as ``keytool -list -v`` shows them (password via env)."""
    listed = subprocess.run(
        [
            "keytool",
            _KEYTOOL_QUICK_START,
            "-list",
            "-v",
            "-keystore",
            str(path),
            "-storetype",
            _KEYTOOL_STORE_TYPES[store_format],
            "-storepass:env",
            "E2E_KEYSTORE_PASS",
        ],
        env={**os.environ, "E2E_KEYSTORE_PASS": password},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    aliases = re.findall(r"^Alias name: (\S+)$", listed, re.MULTILINE)
    leaves = re.findall(r"^Certificate\[1\]:.*?SHA256: ([0-9A-F:]+)$", listed, re.MULTILINE | re.DOTALL)
    return {alias: leaf.replace(":", "").lower() for alias, leaf in zip(aliases, leaves, strict=False)}


def short_directory(cleanup: ExitStack) -> Path:
    """A folder with a short path, removed by ``cleanup``: UNIX socket paths are limited (HAProxy
    refuses those over 97 characters) and pytest's own folders are deeper than that under xdist."""
    directory = Path(tempfile.mkdtemp(prefix="certctl-e2e-"))
    cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
    return directory


def settled(probe: Callable[[], str], expected: str, *, in_a_row: int = 3) -> str:
    """Poll ``probe`` until it returns ``expected`` ``in_a_row`` times running (a reload is a signal:
    an old worker may take a connection for a moment after the command returned), or until
    :data:`SETTLE_SECONDS` pass. Returns the last value seen, for the caller's assertion to show."""
    seen, streak = "", 0
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        seen = probe()
        streak = streak + 1 if seen == expected else 0
        if streak >= in_a_row:
            break
        time.sleep(_POLL_SECONDS)
    return seen


def history(client: httpx2.Client, certificate_id: str) -> list[dict[str, Any]]:
    """The certificate's deployments, newest first."""
    answer = client.get(f"/api/v1/certificates/{certificate_id}/deployments")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items
