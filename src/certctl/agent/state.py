"""The agent's state directory: its enrolment (server URL, agent id, credential), the trusted server CA,
private keys, and per-target deployment state (locks, snapshots).

Layout (the directory is 0700; secret files 0600)::

    agent.json          server, agent id, credential
    server-ca.pem       CA bundle the server's TLS certificate is checked against (optional)
    keys/               private keys: pending-<certificate id>.key, then <SPKI SHA-256>.key
    targets/<id>/       the deployment primitive's locks and snapshots for one target
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/certctl-agent")


class AgentStateError(Exception):
    """The state directory is missing, unreadable or not enrolled; the message is one readable line."""


@dataclass(frozen=True)
class Enrolment:
    server: str
    agent_id: str
    name: str
    credential: str
    ca_bundle: str | None = None

    def __repr__(self) -> str:
        return f"Enrolment(server={self.server!r}, agent_id={self.agent_id!r}, name={self.name!r})"


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600 from the first byte (never world-readable, even briefly)."""
    private_dir(path.parent)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def enrolment_file(self) -> Path:
        return self.root / "agent.json"

    @property
    def keys(self) -> Path:
        return private_dir(self.root / "keys")

    def target_dir(self, target_id: str) -> Path:
        safe = "".join(c for c in target_id if c.isalnum() or c in "_-") or "target"
        return private_dir(self.root / "targets" / safe)

    def save(self, enrolment: Enrolment, *, ca_bundle_pem: bytes | None = None) -> None:
        private_dir(self.root)
        ca_path = enrolment.ca_bundle
        if ca_bundle_pem is not None:
            ca_file = self.root / "server-ca.pem"
            write_private(ca_file, ca_bundle_pem)
            ca_path = str(ca_file)
        body = {
            "server": enrolment.server,
            "agent_id": enrolment.agent_id,
            "name": enrolment.name,
            "credential": enrolment.credential,
            "ca_bundle": ca_path,
        }
        write_private(self.enrolment_file, json.dumps(body, indent=2).encode())

    def load(self) -> Enrolment:
        try:
            body = json.loads(self.enrolment_file.read_text())
        except FileNotFoundError:
            raise AgentStateError(
                f"not enrolled: {self.enrolment_file} does not exist (run 'certctl agent enrol')"
            ) from None
        except (OSError, ValueError) as exc:
            raise AgentStateError(f"cannot read {self.enrolment_file}: {exc}") from None
        try:
            return Enrolment(
                server=str(body["server"]),
                agent_id=str(body["agent_id"]),
                name=str(body.get("name", "")),
                credential=str(body["credential"]),
                ca_bundle=body.get("ca_bundle"),
            )
        except KeyError as exc:
            raise AgentStateError(f"{self.enrolment_file} lacks {exc.args[0]!r}") from None

    def forget_credential(self) -> None:
        """After retirement: the credential is useless, so it does not stay on disk."""
        self.enrolment_file.unlink(missing_ok=True)
