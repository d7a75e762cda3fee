"""The remote file transaction behind agentless SSH deployment.

It gives a host without an agent the same guarantees the local primitive gives a local one: compare
SHA-256 first and touch nothing when the files already hold the material; snapshot the current remote
files into the agent's own state directory; upload each new file to a temporary name in its target
directory with its owner and mode; switch with an atomic SFTP ``posix-rename``; run the config test,
the reload and the verification; and when any of those fails, put the snapshot back the same way and,
if the service had already been reloaded with the new files, reload it again.

The host key is always pinned to one configured key: there is no trust-on-first-use and no way to
turn verification off. This module needs ``asyncssh`` (the ``ssh`` extra) and is imported lazily by
the target that uses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import secrets
import shlex
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncssh

from certctl.agent.deploy.base import DeployResult, Outcome, Step, StepFailed
from certctl.agent.deploy.commands import describe
from certctl.agent.deploy.primitive import FileSpec, Plan
from certctl.agent.deploy.snapshots import prune_snapshots
from certctl.agent.targets.common import FileMode

_PASSWORD_AUTH = ["keyboard-interactive", "password"]
_ACCOUNT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}\$?$")


def remote_path(spec: FileSpec) -> str:
    """The POSIX form of a file's remote path, whatever the agent's own platform."""
    return spec.path.as_posix()


@dataclass(frozen=True)
class RemoteState:
    """A remote file as it was before the switch; ``content`` is None when it did not exist."""

    path: str
    content: bytes | None = field(default=None, repr=False)
    permissions: int | None = None
    uid: int | None = None
    gid: int | None = None


def save_snapshot(state_dir: Path, states: Sequence[RemoteState], *, keep: int) -> Path:
    """Copy the remote files' previous bytes, owners and modes into ``state_dir/snapshots/``, in the
    same layout and manifest as local snapshots (directory 0700, every copy 0600: key files among them,
    and remote modes are not meaningful on the agent), then keep only the newest ``keep``."""
    root = state_dir / "snapshots"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    moment = datetime.now(UTC)
    folder = root / f"{moment:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"
    folder.mkdir(mode=0o700)
    files = []
    for index, state in enumerate(states):
        stored = None
        if state.content is not None:
            stored = f"{index}-{posixpath.basename(state.path)}"
            _write_private(folder / stored, state.content)
        files.append(
            {
                "path": state.path,
                "existed": state.content is not None,
                "stored": stored,
                "uid": state.uid,
                "gid": state.gid,
                "mode": None if state.permissions is None else f"{state.permissions:04o}",
                "sha256": _digest(state.content),
            }
        )
    manifest = {"created_at": moment.isoformat(), "remote": True, "files": files}
    _write_private(folder / "manifest.json", json.dumps(manifest, indent=2).encode() + b"\n")
    prune_snapshots(root, keep=keep)
    return folder


def _write_private(path: Path, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)


class RemoteHost:
    """One authenticated SSH connection with its SFTP session; every failure becomes a StepFailed."""

    def __init__(
        self, connection: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient, *, command_timeout: float
    ) -> None:
        self._connection = connection
        self._sftp = sftp
        self._command_timeout = command_timeout
        self._ids: dict[tuple[str, str], int] = {}

    async def read_state(self, path: str) -> RemoteState:
        """The file now at ``path`` (bytes, mode, owner), or a state saying it does not exist."""
        try:
            attrs = await self._sftp.stat(path)
            async with self._sftp.open(path, "rb") as handle:
                raw = await handle.read()
        except asyncssh.SFTPNoSuchFile:
            return RemoteState(path=path, content=None)
        except (asyncssh.Error, OSError) as exc:
            raise StepFailed(f"cannot read {path}: {_reason(exc)}") from None
        return RemoteState(
            path=path,
            content=raw if isinstance(raw, bytes) else raw.encode(),
            permissions=None if attrs.permissions is None else attrs.permissions & 0o777,
            uid=attrs.uid,
            gid=attrs.gid,
        )

    async def is_directory(self, path: str) -> bool:
        try:
            return await self._sftp.isdir(path)
        except (asyncssh.Error, OSError) as exc:
            raise StepFailed(f"cannot inspect {path}: {_reason(exc)}") from None

    async def run(self, argv: Sequence[str]) -> str:
        """Run a command remotely; returns a one-line summary or raises StepFailed with its last output.

        SSH hands the server a command line, so the argv (already free of shell metacharacters) is
        joined with shell quoting."""
        command = shlex.join(argv)
        try:
            result = await self._connection.run(command, check=False, timeout=self._command_timeout)
        except asyncssh.TimeoutError:
            raise StepFailed(f"{command} timed out after {self._command_timeout:g}s") from None
        except (asyncssh.Error, OSError) as exc:
            raise StepFailed(f"{command} could not run: {_reason(exc)}") from None
        if result.exit_status != 0:
            signal = result.exit_signal[0] if result.exit_signal else None
            status = f"was killed by {signal}" if signal else f"exited {result.exit_status}"
            last = _last_line(result.stderr) or _last_line(result.stdout)
            raise StepFailed(f"{command} {status}" + (f": {last}" if last else ""))
        return f"{command}: ok"

    async def stage(self, spec: FileSpec, before: RemoteState) -> str:
        """Upload one file to a fresh temporary name beside its target, with its final owner and mode.

        The temporary file is created exclusively with mode 0600, so key bytes are never readable by
        others, even for a moment."""
        target = remote_path(spec)
        directory, name = posixpath.split(target)
        temporary = posixpath.join(directory, f".{name}.certctl-{secrets.token_hex(6)}.tmp")
        try:
            async with self._sftp.open(
                temporary, "xb", attrs=asyncssh.SFTPAttrs(permissions=0o600)
            ) as handle:
                await handle.write(spec.content)
            uid, gid = await self._owner(spec.mode, before)
            if uid is not None or gid is not None:
                current = await self._sftp.stat(temporary)
                new_uid = current.uid if uid is None else uid
                new_gid = current.gid if gid is None else gid
                if new_uid is None or new_gid is None:
                    raise StepFailed(f"cannot set the owner of {target}: the server reports no owners")
                if (new_uid, new_gid) != (current.uid, current.gid):
                    await self._sftp.chown(temporary, new_uid, new_gid)
            await self._sftp.chmod(temporary, _mode(spec, before))
        except StepFailed:
            await self.discard(temporary)
            raise
        except (asyncssh.Error, OSError) as exc:
            await self.discard(temporary)
            raise StepFailed(f"cannot stage {target}: {_reason(exc)}") from None
        return temporary

    async def switch(self, temporary: str, target: str) -> str:
        """Move a staged file over its target: atomic ``posix-rename`` where the server offers it.

        Without that extension a plain SFTP rename is used; it refuses an existing target, which is then
        removed first (the only non-atomic case, reported in the trail)."""
        try:
            try:
                await self._sftp.posix_rename(temporary, target)
                return f"installed {target}"
            except asyncssh.SFTPOpUnsupported:
                pass
            if await self._sftp.exists(target):
                await self._sftp.remove(target)
                await self._sftp.rename(temporary, target)
                return f"installed {target} (server lacks posix-rename: replaced non-atomically)"
            await self._sftp.rename(temporary, target)
            return f"installed {target}"
        except (asyncssh.Error, OSError) as exc:
            raise StepFailed(f"cannot install {target}: {_reason(exc)}") from None

    async def remove(self, path: str) -> None:
        """Remove a file; one that is already gone is fine."""
        try:
            await self._sftp.remove(path)
        except asyncssh.SFTPNoSuchFile:
            pass
        except (asyncssh.Error, OSError) as exc:
            raise StepFailed(f"cannot remove {path}: {_reason(exc)}") from None

    async def discard(self, temporary: str) -> None:
        """Remove a temporary upload, ignoring errors: cleanup must not hide the real failure."""
        with suppress(asyncssh.Error, OSError):
            await self._sftp.remove(temporary)

    async def _owner(self, mode: FileMode, before: RemoteState) -> tuple[int | None, int | None]:
        uid = await self._account_id("user", mode.owner) if mode.owner is not None else before.uid
        gid = await self._account_id("group", mode.group) if mode.group is not None else before.gid
        return uid, gid

    async def _account_id(self, kind: str, name: str) -> int:
        """Resolve an owner or group: numeric as is, a name with ``id -u`` / ``getent group`` remotely
        (names are looked up on the remote host, where the file lives, not on the agent)."""
        if name.isdigit():
            return int(name)
        if not _ACCOUNT_NAME.match(name):
            raise StepFailed(f"{kind} {name!r} is not a valid account name")
        if (kind, name) not in self._ids:
            argv = ["id", "-u", name] if kind == "user" else ["getent", "group", name]
            try:
                result = await self._connection.run(
                    shlex.join(argv), check=False, timeout=self._command_timeout
                )
            except (asyncssh.Error, OSError) as exc:
                raise StepFailed(f"cannot look up {kind} {name!r}: {_reason(exc)}") from None
            output = str(result.stdout or "").strip()
            if kind == "group":
                output = output.split(":")[2] if output.count(":") >= 2 else ""
            if result.exit_status != 0 or not output.isdigit():
                raise StepFailed(f"{kind} {name!r} does not exist on the remote host")
            self._ids[(kind, name)] = int(output)
        return self._ids[(kind, name)]


def _mode(spec: FileSpec, before: RemoteState) -> int:
    if spec.mode.mode is not None:
        return spec.mode.mode
    if before.permissions is not None:
        return before.permissions
    return 0o600 if spec.secret else spec.default_mode


def _last_line(output: object) -> str:
    text = output.decode(errors="replace") if isinstance(output, bytes) else str(output or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def _reason(exc: BaseException) -> str:
    """A short reason from an SSH/SFTP error: its server-side reason line, never any payload."""
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
    return str(reason).splitlines()[0][:200]


@asynccontextmanager
async def open_remote(
    *,
    host: str,
    port: int,
    username: str,
    known_host_key: str,
    private_key: str | None,
    password: str | None,
    connect_timeout: float,
    command_timeout: float,
) -> AsyncIterator[RemoteHost]:
    """Connect with the host key pinned to ``known_host_key`` and authenticate with the given key or
    password only (no local agent, no ``~/.ssh`` keys or config). Each failure is one readable line."""
    where = f"{username}@{host}:{port}"
    try:
        trusted = asyncssh.import_public_key(known_host_key)
    except (asyncssh.KeyImportError, ValueError):
        raise StepFailed("known_host_key is not a valid SSH public key line") from None
    client_keys = None
    if private_key is not None:
        try:
            client_keys = [asyncssh.import_private_key(private_key)]
        except (asyncssh.KeyImportError, ValueError):
            raise StepFailed("private_key is not a readable unencrypted OpenSSH or PEM private key") from None
    try:
        connection = await asyncssh.connect(
            host,
            port,
            username=username,
            known_hosts=([trusted], [], []),
            client_keys=client_keys,
            password=password,
            preferred_auth=[*(["publickey"] if client_keys else []), *(_PASSWORD_AUTH if password else [])],
            agent_path=None,
            config=None,
            connect_timeout=connect_timeout,
        )
    except asyncssh.HostKeyNotVerifiable:
        raise StepFailed(f"ssh {where}: the server's host key does not match known_host_key") from None
    except asyncssh.PermissionDenied:
        raise StepFailed(f"ssh {where}: authentication failed for user {username!r}") from None
    except (TimeoutError, asyncssh.Error, OSError) as exc:
        raise StepFailed(f"ssh {where}: cannot connect: {_reason(exc)}") from None
    try:
        async with connection:
            try:
                sftp = await connection.start_sftp_client()
            except (asyncssh.Error, OSError) as exc:
                raise StepFailed(f"ssh {where}: no SFTP service: {_reason(exc)}") from None
            async with sftp:
                yield RemoteHost(connection, sftp, command_timeout=command_timeout)
    except (asyncssh.Error, OSError) as exc:
        raise StepFailed(f"ssh {where}: connection lost: {_reason(exc)}") from None


async def apply_remote(
    host: RemoteHost, plan: Plan, *, state_dir: Path, keep_snapshots: int, dry_run: bool
) -> DeployResult:
    """Install ``plan.files`` on the remote host as one transaction (see the module docstring)."""
    specs = list(plan.files)
    before = [await host.read_state(remote_path(spec)) for spec in specs]
    if all(_digest(old.content) == _digest(new.content) for old, new in zip(before, specs, strict=True)):
        return DeployResult(Outcome.UNCHANGED, "the remote files already hold this certificate")
    targets = ", ".join(remote_path(spec) for spec in specs)
    if dry_run:
        steps = [f"would run {describe(step, name)}" for name, step in _post_switch_steps(plan)]
        return DeployResult(Outcome.DRY_RUN, f"would replace {targets}", tuple(steps))
    trail = [f"snapshot {save_snapshot(state_dir, before, keep=keep_snapshots).name}"]
    staged: list[tuple[str, str]] = []  # (temporary, target)
    try:
        for spec, state in zip(specs, before, strict=True):
            staged.append((await host.stage(spec, state), remote_path(spec)))
    except StepFailed as exc:
        for temporary, _ in staged:
            await host.discard(temporary)
        return DeployResult(Outcome.FAILED, f"{exc} (nothing changed)", tuple(trail))
    reloaded = False
    try:
        while staged:
            trail.append(await host.switch(*staged[0]))
            staged.pop(0)
        for name, step in _post_switch_steps(plan):
            try:
                await step()
            except Exception as exc:
                trail.append(f"{describe(step, name)}: failed")
                raise StepFailed(f"{name} failed: {_step_reason(exc)}") from None
            trail.append(f"{describe(step, name)}: ok")
            reloaded = reloaded or step is plan.reload
    except StepFailed as exc:
        for temporary, _ in staged:
            await host.discard(temporary)
        reload = plan.reload if reloaded else None
        return await _roll_back(host, before, reload, failure=str(exc), trail=trail)
    served = plan.expected_fingerprint if plan.verify is not None else None
    return DeployResult(Outcome.SUCCEEDED, f"installed {targets}", tuple(trail), served_fingerprint=served)


def _post_switch_steps(plan: Plan) -> list[tuple[str, Step]]:
    named = (("config test", plan.check), ("reload", plan.reload), ("verification", plan.verify))
    return [(name, step) for name, step in named if step is not None]


async def _roll_back(
    host: RemoteHost, before: Sequence[RemoteState], reload: Step | None, *, failure: str, trail: list[str]
) -> DeployResult:
    """Put every file back as the snapshot recorded it (files that did not exist are removed) and,
    when the service was already reloaded with the new files, reload it again. A reload that itself
    failed left the service on the previous files, so it is not repeated."""
    try:
        for state in before:
            if state.content is None:
                await host.remove(state.path)
                trail.append(f"removed {state.path}")
                continue
            uid, gid = (None if value is None else str(value) for value in (state.uid, state.gid))
            owner = FileMode(mode=state.permissions, owner=uid, group=gid)
            spec = FileSpec(path=Path(state.path), content=state.content, mode=owner)
            await host.switch(await host.stage(spec, state), state.path)
            trail.append(f"restored {state.path}")
        if reload is not None:
            await reload()
            trail.append(f"{describe(reload, 'reload')} (previous files): ok")
    except Exception as exc:
        message = f"{failure}; restoring the previous state failed too: {_step_reason(exc)}"
        return DeployResult(Outcome.ROLLBACK_FAILED, message, tuple(trail))
    return DeployResult(Outcome.ROLLED_BACK, f"{failure}; previous files restored", tuple(trail))


def _step_reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {exc}"


def _digest(content: bytes | None) -> str | None:
    return None if content is None else hashlib.sha256(content).hexdigest()
