"""The deployer behind every target that is "some files plus the server's own commands".

nginx, Apache, HAProxy and plain files differ only in which files they write from the material, which
commands test and reload the server, and what they report; :class:`FileTarget` runs the rest through
:func:`certctl.agent.deploy.primitive.apply` (lock, skip-if-unchanged, snapshot, atomic switch, check,
reload, TLS verification, rollback).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from certctl.agent.deploy.base import DeployResult, Material, Outcome, Step, StepFailed
from certctl.agent.deploy.commands import describe
from certctl.agent.deploy.primitive import FileSpec, Plan, apply
from certctl.agent.deploy.verify import served_fingerprint, tls_verify_step
from certctl.agent.targets.common import FileMode, Snapshots, TlsVerify


class MaterialRefused(ValueError):
    """The material cannot be turned into this target's files; the message holds no key material."""


@dataclass(frozen=True)
class FileTarget:
    """One configured file-based target: a :class:`~certctl.agent.deploy.base.Deployer`."""

    type_name: str
    files: Callable[[Material], Sequence[FileSpec]]
    """Builds the files to install from the material; raises MaterialRefused."""
    directories: tuple[Path, ...]
    state_dir: Path
    snapshots: Snapshots
    check_step: Step | None = None
    reload_step: Step | None = None
    verify: TlsVerify | None = None

    async def deploy(self, material: Material, *, dry_run: bool = False) -> DeployResult:
        try:
            files = self.files(material)
        except MaterialRefused as exc:
            return DeployResult(Outcome.FAILED, f"{self.type_name}: {exc}")
        verify = None
        if self.verify is not None:
            verify = tls_verify_step(self.verify, material.fingerprint_sha256)
        plan = Plan(
            files=files,
            check=self.check_step,
            reload=self.reload_step,
            verify=verify,
            expected_fingerprint=material.fingerprint_sha256,
            certificate_pem=material.certificate_pem,
            private_key_pem=material.private_key_pem,
        )
        return await apply(
            plan, state_dir=self.state_dir, keep_snapshots=self.snapshots.keep, dry_run=dry_run
        )

    async def check(self) -> str:
        """Directories present, config test passing, endpoint reachable (when verification is set)."""
        missing = [str(directory) for directory in self.directories if not directory.is_dir()]
        if missing:
            raise StepFailed(f"{self.type_name}: missing directory {', '.join(missing)}")
        report = [f"{self.type_name}: directories present"]
        if self.check_step is not None:
            await self.check_step()
            report.append(f"{describe(self.check_step, 'config test')}: ok")
        if self.verify is not None:
            endpoint = f"{self.verify.host}:{self.verify.port}"
            try:
                served = await served_fingerprint(
                    host=self.verify.host,
                    port=self.verify.port,
                    server_name=self.verify.server_name,
                    starttls=self.verify.starttls,
                    timeout_seconds=self.verify.timeout_seconds,
                )
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                raise StepFailed(
                    f"endpoint {endpoint} unreachable over TLS: {str(exc) or type(exc).__name__}"
                ) from None
            report.append(f"{endpoint} serves {served[:16]}...")
        return "; ".join(report)


def text_file(path: str, text: str, mode: FileMode, *, secret: bool = False) -> FileSpec:
    """A PEM (or other text) file; key files are ``secret`` and default to 0600."""
    return FileSpec(path=Path(path), content=text.encode(), mode=mode, secret=secret)


def parent_directories(*paths: str | None) -> tuple[Path, ...]:
    """The distinct directories the configured paths live in, in order."""
    seen: dict[Path, None] = {}
    for path in paths:
        if path is not None:
            seen.setdefault(Path(path).parent)
    return tuple(seen)


def require_distinct(**paths: str | None) -> None:
    """Refuse two outputs configured to the same path (the second write would hide the first)."""
    by_path: dict[str, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        if path in by_path:
            raise ValueError(f"{option} and {by_path[path]} name the same file {path}")
        by_path[path] = option
