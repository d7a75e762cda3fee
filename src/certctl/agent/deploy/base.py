"""The values every deployer shares: what to install, what happened, and the error a step raises.

A deployer turns one :class:`Material` into files (or API calls) on one target and reports a
:class:`DeployResult`. Private keys exist here only in memory and in files with mode 0600; they are
never part of a result, a message or a log line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    UNCHANGED = "unchanged"
    """The installed files already hold this material (same SHA-256): nothing was written or reloaded."""
    FAILED = "failed"
    """Failed before anything was changed on the target (bad options, lock busy, unreadable files)."""
    ROLLED_BACK = "rolled_back"
    """A step after the switch failed; the previous files were restored and the service reloaded."""
    ROLLBACK_FAILED = "rollback_failed"
    """A step failed and restoring the previous state failed too: the target needs a person."""
    DRY_RUN = "dry_run"


@dataclass(frozen=True)
class Material:
    """A certificate, its chain (issuing CA first, no root) and the private key that the agent holds."""

    certificate_pem: str
    chain_pem: str
    private_key_pem: str = field(repr=False)
    fingerprint_sha256: str
    """Lower-case hex SHA-256 of the leaf's DER: what TLS verification expects the endpoint to serve."""

    @property
    def fullchain_pem(self) -> str:
        return self.certificate_pem.rstrip("\n") + "\n" + self.chain_pem.lstrip("\n")


@dataclass(frozen=True)
class DeployResult:
    outcome: Outcome
    message: str
    steps: tuple[str, ...] = ()
    """Human-readable trail of what ran (``"wrote /etc/nginx/tls/site.crt"``, ``"nginx -t: ok"``)."""
    served_fingerprint: str | None = None
    """SHA-256 of the certificate the endpoint served at verification, when it was verified."""

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.SUCCEEDED, Outcome.UNCHANGED, Outcome.DRY_RUN)


class StepFailed(Exception):
    """A deployment step failed; the message is one readable line (command, exit code, last output)."""


Step = Callable[[], Awaitable[None]]
"""One action of a deployment (config test, reload, hot swap, verification); raises StepFailed."""


class Deployer(Protocol):
    async def deploy(self, material: Material, *, dry_run: bool = False) -> DeployResult: ...

    async def check(self) -> str:
        """Test the target without changing it (paths usable, config test passes, endpoint reachable);
        returns a one-line summary or raises StepFailed."""
        ...
