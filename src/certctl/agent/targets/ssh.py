"""The ``ssh`` target type: a proxy agent installs certificate material on a host that runs no agent.

The agent logs in over SSH with a private key or a password, with the server's host key pinned to the
configured ``known_host_key`` (verification cannot be turned off), and installs the files over SFTP with
the same guarantees as the local file primitive: unchanged files are left alone, the previous files are
snapshotted into the agent's own state directory, the switch is an atomic rename, and a failed config
test, reload or TLS check puts the previous files back (see :mod:`certctl.agent.deploy.remote`).

Owners and groups may be given by number or by name; names are resolved on the remote host
(``id -u <name>``, ``getent group <name>``), since that is where the files live. Changing the owner needs
a remote login allowed to ``chown`` (usually root). Commands run remotely through the login shell of
the remote account: the argv is joined with shell quoting, its items already refused any metacharacter.

The SSH library is the optional ``ssh`` extra and is imported only when a deployment runs, so this
module (and the target registry) loads without it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import Field, SecretStr, field_validator, model_validator

from certctl.agent.deploy.base import DeployResult, Material, Outcome, StepFailed
from certctl.agent.deploy.primitive import FileSpec, Plan
from certctl.agent.deploy.verify import tls_verify_step
from certctl.agent.targets import TargetType
from certctl.agent.targets.common import AbsolutePath, Argv, FileMode, Snapshots, TargetOptions, TlsVerify

if TYPE_CHECKING:
    from certctl.agent.deploy.remote import RemoteHost

MISSING_EXTRA = "the ssh target needs the 'ssh' extra: pip install 'certctl[ssh]'"

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$|^[0-9A-Fa-f:.]+$")
_HOST_KEY = re.compile(
    r"^(?:ssh-ed25519|ssh-ed448|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)"
    r"|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) +[A-Za-z0-9+/]+={0,2}(?: [^\n\r]*)?$"
)


class SshOptions(TargetOptions):
    """Where and how to log in, which remote files to write, and what to run after writing them."""

    host: Annotated[str, Field(min_length=1, max_length=253)]
    """Hostname or IP address of the remote host."""
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    username: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.@-]*$")]
    private_key: SecretStr | None = None
    """Unencrypted private key text (OpenSSH or PEM). One of ``private_key`` and ``password`` is required."""
    password: SecretStr | None = None
    known_host_key: str
    """The server's public host key line, e.g. ``ssh-ed25519 AAAA...`` (``/etc/ssh/ssh_host_*_key.pub``)."""
    certificate_path: AbsolutePath
    certificate_contents: Literal["fullchain", "leaf"] = "fullchain"
    """What the certificate file holds: the leaf followed by its chain (default), or the leaf alone."""
    key_path: AbsolutePath
    chain_path: AbsolutePath | None = None
    """Optional separate file with the chain (issuing CA first, no root)."""
    certificate_mode: FileMode = FileMode()
    key_mode: FileMode = FileMode()
    chain_mode: FileMode = FileMode()
    test_command: Argv | None = None
    """The service's config test, run remotely after the switch and before the reload."""
    reload_command: Argv | None = None
    verify: TlsVerify | None = None
    """After the reload, the agent itself connects here and checks the served certificate."""
    snapshots: Snapshots = Snapshots()
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=120)] = 15.0
    command_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 60.0

    @field_validator("host")
    @classmethod
    def _hostname_or_address(cls, value: str) -> str:
        if not _HOST.match(value):
            raise ValueError(f"{value!r} is not a hostname or IP address")
        return value

    @field_validator("known_host_key")
    @classmethod
    def _public_key_line(cls, value: str) -> str:
        value = value.strip()
        if not _HOST_KEY.match(value):
            raise ValueError("must be the server's public host key line, e.g. 'ssh-ed25519 AAAA...'")
        return value

    @model_validator(mode="after")
    def _complete(self) -> SshOptions:
        if self.private_key is None and self.password is None:
            raise ValueError("one of private_key or password is required")
        paths = [self.certificate_path, self.key_path, *([self.chain_path] if self.chain_path else [])]
        if len(set(paths)) != len(paths):
            raise ValueError("certificate_path, key_path and chain_path must be different files")
        return self


def _remote() -> ModuleType:
    """The remote transaction module, which needs the optional SSH library."""
    try:
        from certctl.agent.deploy import remote
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "asyncssh":
            raise StepFailed(MISSING_EXTRA) from None
        raise
    return remote


def check_material(material: Material) -> None:
    """Refuse material that would break the service: unparsable PEM, a key that does not match the
    certificate, or a fingerprint that is not the leaf's. Messages never quote the key."""
    try:
        leaf = x509.load_pem_x509_certificate(material.certificate_pem.encode())
        if material.chain_pem.strip():
            x509.load_pem_x509_certificates(material.chain_pem.encode())
    except ValueError:
        raise StepFailed("the certificate or chain is not valid PEM") from None
    try:
        key = serialization.load_pem_private_key(material.private_key_pem.encode(), password=None)
    except (ValueError, TypeError):
        raise StepFailed("the private key is not a readable unencrypted PEM key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise StepFailed("the private key does not match the certificate")
    der = leaf.public_bytes(serialization.Encoding.DER)
    if hashlib.sha256(der).hexdigest() != material.fingerprint_sha256.replace(":", "").lower():
        raise StepFailed("the material's fingerprint is not the certificate's")


@contextmanager
def _exclusive(state_dir: Path) -> Iterator[None]:
    """One deployment per target at a time, across agent processes too (a lock file in state_dir)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(state_dir / "deploy.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StepFailed("another deployment to this target is running") from None
        yield
    finally:
        os.close(descriptor)


@dataclass(frozen=True)
class RemoteCommand:
    """A :data:`Step` that runs ``argv`` on the remote host."""

    host: RemoteHost
    argv: tuple[str, ...]

    @property
    def description(self) -> str:
        return " ".join(self.argv)

    async def __call__(self) -> None:
        await self.host.run(self.argv)


@dataclass(frozen=True)
class SshDeployer:
    options: SshOptions
    state_dir: Path

    @property
    def where(self) -> str:
        return f"{self.options.username}@{self.options.host}:{self.options.port}"

    def files(self, material: Material) -> list[FileSpec]:
        """The remote files for ``material``, after checking it."""
        check_material(material)
        options = self.options
        certificate = (
            material.fullchain_pem
            if options.certificate_contents == "fullchain"
            else material.certificate_pem
        )
        files = [
            FileSpec(
                path=Path(options.certificate_path),
                content=certificate.encode(),
                mode=options.certificate_mode,
            ),
            FileSpec(
                path=Path(options.key_path),
                content=material.private_key_pem.encode(),
                mode=options.key_mode,
                default_mode=0o600,
                secret=True,
            ),
        ]
        if options.chain_path is not None:
            files.append(
                FileSpec(
                    path=Path(options.chain_path),
                    content=material.chain_pem.encode(),
                    mode=options.chain_mode,
                )
            )
        return files

    def _connect(self, remote: ModuleType) -> AbstractAsyncContextManager[RemoteHost]:
        options = self.options
        connection: AbstractAsyncContextManager[RemoteHost] = remote.open_remote(
            host=options.host,
            port=options.port,
            username=options.username,
            known_host_key=options.known_host_key,
            private_key=options.private_key.get_secret_value() if options.private_key else None,
            password=options.password.get_secret_value() if options.password else None,
            connect_timeout=options.connect_timeout_seconds,
            command_timeout=options.command_timeout_seconds,
        )
        return connection

    def _plan(self, host: RemoteHost, files: Sequence[FileSpec], fingerprint: str) -> Plan:
        options = self.options
        return Plan(
            files=files,
            check=RemoteCommand(host, tuple(options.test_command)) if options.test_command else None,
            reload=RemoteCommand(host, tuple(options.reload_command)) if options.reload_command else None,
            verify=tls_verify_step(options.verify, fingerprint) if options.verify else None,
            expected_fingerprint=fingerprint,
        )

    async def deploy(self, material: Material, *, dry_run: bool = False) -> DeployResult:
        """Install ``material`` on the remote host; FAILED means nothing on the host was changed."""
        result: DeployResult | None = None
        try:
            files = self.files(material)
            remote = _remote()
            with _exclusive(self.state_dir):
                async with self._connect(remote) as host:
                    result = await remote.apply_remote(
                        host,
                        self._plan(host, files, material.fingerprint_sha256),
                        state_dir=self.state_dir,
                        keep_snapshots=self.options.snapshots.keep,
                        dry_run=dry_run,
                    )
        except StepFailed as exc:
            if result is None:
                return DeployResult(Outcome.FAILED, str(exc))
            # the transaction had finished; only closing the session failed
        assert result is not None
        return result

    async def check(self) -> str:
        """Log in, confirm the remote directories exist and run the config test; changes nothing."""
        options = self.options
        paths = [
            options.certificate_path,
            options.key_path,
            *([options.chain_path] if options.chain_path else []),
        ]
        directories = sorted({posixpath.dirname(path) for path in paths})
        async with self._connect(_remote()) as host:
            missing = [directory for directory in directories if not await host.is_directory(directory)]
            if missing:
                raise StepFailed(f"ssh {self.where}: missing remote directory {', '.join(missing)}")
            summary = [
                f"ssh {self.where}: host key matches",
                f"directories present: {', '.join(directories)}",
            ]
            if options.test_command:
                summary.append(await host.run(options.test_command))
            return "; ".join(summary)


def _build(options: SshOptions, state_dir: Path) -> SshDeployer:
    return SshDeployer(options=options, state_dir=state_dir)


SSH = TargetType(
    name="ssh",
    description="Agentless: a proxy agent installs the files over SSH/SFTP on a host without an agent",
    options_model=SshOptions,
    build=_build,
    agentless=True,
)
