"""The deployment primitive shared by every file-based target.

Per-path lock -> skip when the new bytes hash to what is installed -> snapshot the current files ->
write each file to a temporary file in the same directory with its owner and mode -> check the material
(parses, key matches certificate) -> atomic rename -> the server's own config test -> reload (or hot
swap) -> verify over TLS -> on any failure after the switch restore the snapshot, reload again and
report. The last N snapshots are kept.

Everything that can be refused without touching the target (unknown owner, missing directory, a PEM
that does not parse, a key that does not belong to the certificate) is refused before the snapshot, so
``FAILED`` always means "nothing changed". Temporary files live next to their targets because
``os.replace`` is atomic only within one file system. A symlink at a target path is replaced by the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import grp
import hashlib
import os
import pwd
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl.agent.deploy.base import DeployResult, Outcome, Step, StepFailed
from certctl.agent.deploy.commands import describe
from certctl.agent.deploy.snapshots import (
    Snapshot,
    restore_snapshot,
    sync_directories,
    take_snapshot,
    write_temporary,
)
from certctl.agent.targets.common import FileMode

_LOCK_POLL_SECONDS = 0.1
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class FileSpec:
    """One file to install. Owner and mode come from ``mode`` when set, else the existing file's, else
    ``default_mode`` (owner: the agent's own user)."""

    path: Path
    content: bytes = field(repr=False)
    mode: FileMode = field(default_factory=FileMode)
    default_mode: int = 0o644
    secret: bool = False
    """Holds a private key: written 0600 unless configured otherwise, never echoed."""
    same_content: Callable[[bytes], bool] | None = field(default=None, repr=False, compare=False)
    """For formats whose bytes differ between two writes of the same material (PKCS#12 salts): says
    whether the installed bytes already hold this content. Without it, equal SHA-256 decides."""


@dataclass(frozen=True)
class Plan:
    files: Sequence[FileSpec]
    check: Step | None = None
    """The server's own config test, run after the switch and before reload."""
    reload: Step | None = None
    verify: Step | None = None
    """Confirms the endpoint serves the new certificate (retries inside)."""
    expected_fingerprint: str | None = None
    certificate_pem: str | None = None
    """With ``private_key_pem``: checked to belong together before anything is switched."""
    private_key_pem: str | None = field(default=None, repr=False)
    lock_timeout_seconds: float = 30.0
    """How long to wait for another deployment to the same paths before giving up."""


@dataclass(frozen=True)
class _Ownership:
    uid: int
    gid: int
    mode: int


class _Refused(Exception):
    """The plan cannot be applied; nothing has been changed."""


async def apply(
    plan: Plan, *, state_dir: Path, keep_snapshots: int = 3, dry_run: bool = False
) -> DeployResult:
    """Install ``plan.files`` atomically, run check, reload and verify, and roll back on failure."""
    paths = [Path(spec.path) for spec in plan.files]
    if not paths:
        return DeployResult(Outcome.FAILED, "nothing to deploy: the plan has no files")
    if len(set(paths)) != len(paths) or not all(path.is_absolute() for path in paths):
        return DeployResult(Outcome.FAILED, "file paths must be absolute and distinct")
    try:
        locks = await _lock(state_dir / "locks", paths, plan.lock_timeout_seconds)
    except TimeoutError:
        names = ", ".join(str(path) for path in paths)
        return DeployResult(Outcome.FAILED, f"another deployment holds the lock on {names}")
    except OSError as exc:
        return DeployResult(Outcome.FAILED, f"cannot take the deployment lock: {exc.strerror or exc}")
    try:
        return await _apply_locked(plan, state_dir, keep_snapshots, dry_run)
    finally:
        for descriptor in locks:
            os.close(descriptor)  # closing releases the flock


async def _lock(directory: Path, paths: Sequence[Path], wait_seconds: float) -> list[int]:
    """One exclusive flock per target path, taken in sorted order so two deployments cannot deadlock."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    deadline = asyncio.get_running_loop().time() + wait_seconds
    held: list[int] = []
    try:
        for path in sorted(paths):
            name = hashlib.sha256(str(path).encode()).hexdigest()
            descriptor = os.open(directory / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            held.append(descriptor)
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if asyncio.get_running_loop().time() >= deadline:
                        raise TimeoutError from None
                    await asyncio.sleep(_LOCK_POLL_SECONDS)
    except BaseException:
        for descriptor in held:
            os.close(descriptor)
        raise
    return held


async def _apply_locked(plan: Plan, state_dir: Path, keep_snapshots: int, dry_run: bool) -> DeployResult:
    try:
        current = [_read_current(Path(spec.path)) for spec in plan.files]
    except _Refused as exc:
        return DeployResult(Outcome.FAILED, str(exc))
    if all(_holds(spec, data) for spec, data in zip(plan.files, current, strict=True)):
        return DeployResult(
            Outcome.UNCHANGED,
            f"{_count(len(plan.files))} already {'holds' if len(plan.files) == 1 else 'hold'} this material",
            steps=tuple(f"unchanged {spec.path}" for spec in plan.files),
        )
    try:
        _check_material(plan)
        owners = [_ownership(spec) for spec in plan.files]
    except _Refused as exc:
        return DeployResult(Outcome.FAILED, str(exc))
    if dry_run:
        return _dry_run(plan, owners, existing=sum(data is not None for data in current))
    try:
        snapshot = take_snapshot(
            state_dir / "snapshots",
            [(Path(spec.path), data, spec.secret) for spec, data in zip(plan.files, current, strict=True)],
            keep=keep_snapshots,
        )
    except OSError as exc:
        return DeployResult(Outcome.FAILED, f"cannot snapshot the current files: {exc}")
    return await _install(plan, owners, snapshot)


def _read_current(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise _Refused(f"{path} is a directory") from None
    except OSError as exc:
        raise _Refused(f"cannot read {path}: {exc.strerror or exc}") from None


def _holds(spec: FileSpec, installed: bytes | None) -> bool:
    if installed is None:
        return False
    if hashlib.sha256(installed).digest() == hashlib.sha256(spec.content).digest():
        return True
    if spec.same_content is None:
        return False
    try:
        return spec.same_content(installed)
    except Exception:  # an unreadable installed file is simply "different"
        return False


def _check_material(plan: Plan) -> None:
    """Every PEM block we are about to write parses, and the key belongs to the certificate."""
    for spec in plan.files:
        _check_pem_blocks(Path(spec.path), spec.content)
    if plan.certificate_pem is None or plan.private_key_pem is None:
        return
    try:
        certificate = x509.load_pem_x509_certificate(plan.certificate_pem.encode())
        key = serialization.load_pem_private_key(plan.private_key_pem.encode(), password=None)
    except Exception:
        raise _Refused("the certificate or private key does not parse") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise _Refused("the private key does not match the certificate's public key")


def _check_pem_blocks(path: Path, content: bytes) -> None:
    if b"-----BEGIN " not in content:
        return  # binary formats (PKCS#12, DER) are built by the target from parsed objects
    blocks = list(_PEM_BLOCK.finditer(content))
    if len(blocks) != content.count(b"-----BEGIN "):
        raise _Refused(f"{path}: malformed PEM (a block is not terminated)")
    for number, block in enumerate(blocks, start=1):
        label = block.group(1)
        try:
            if label == b"CERTIFICATE":
                x509.load_pem_x509_certificate(block.group(0))
            elif label.endswith(b"PRIVATE KEY") and not label.startswith(b"ENCRYPTED"):
                serialization.load_pem_private_key(block.group(0), password=None)
        except Exception:
            kind = label.decode().lower()
            raise _Refused(f"{path}: PEM block {number} ({kind}) does not parse") from None


def _ownership(spec: FileSpec) -> _Ownership:
    """Explicit FileMode fields, else the installed file's, else the agent's user and default mode."""
    path = Path(spec.path)
    if not path.parent.is_dir():
        raise _Refused(f"directory {path.parent} does not exist (needed for {path})")
    try:
        existing: os.stat_result | None = path.stat()
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise _Refused(f"cannot inspect {path}: {exc.strerror or exc}") from None
    if spec.mode.owner is not None:
        uid = _user_id(spec.mode.owner)
    else:
        uid = existing.st_uid if existing else os.geteuid()
    if spec.mode.group is not None:
        gid = _group_id(spec.mode.group)
    else:
        gid = existing.st_gid if existing else os.getegid()
    if spec.mode.mode is not None:
        mode = spec.mode.mode
    elif existing is not None:
        mode = stat.S_IMODE(existing.st_mode)
    else:
        mode = 0o600 if spec.secret else spec.default_mode
    return _Ownership(uid=uid, gid=gid, mode=mode)


def _user_id(name: str) -> int:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise _Refused(f"unknown user {name!r}") from None


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise _Refused(f"unknown group {name!r}") from None


def _dry_run(plan: Plan, owners: Sequence[_Ownership], *, existing: int) -> DeployResult:
    steps = [f"would snapshot {_count(existing)} currently installed"] if existing else []
    for spec, owner in zip(plan.files, owners, strict=True):
        steps.append(
            f"would write {spec.path} ({len(spec.content)} bytes, mode {owner.mode:04o}, "
            f"owner {owner.uid}:{owner.gid})"
        )
    for name, step in _post_switch_steps(plan):
        steps.append(f"would run {describe(step, name)}")
    return DeployResult(Outcome.DRY_RUN, f"would install {_count(len(plan.files))}", steps=tuple(steps))


def _post_switch_steps(plan: Plan) -> list[tuple[str, Step]]:
    named = (("config test", plan.check), ("reload", plan.reload), ("verification", plan.verify))
    return [(name, step) for name, step in named if step is not None]


async def _install(plan: Plan, owners: Sequence[_Ownership], snapshot: Snapshot) -> DeployResult:
    trail = [f"snapshot {snapshot.directory.name}"]
    temporaries: list[Path] = []
    try:
        try:
            for spec, owner in zip(plan.files, owners, strict=True):
                temporaries.append(
                    write_temporary(
                        Path(spec.path), spec.content, uid=owner.uid, gid=owner.gid, mode=owner.mode
                    )
                )
        except OSError as exc:
            return DeployResult(
                Outcome.FAILED, f"cannot write a temporary file: {exc.strerror or exc}", steps=tuple(trail)
            )
        try:
            for spec, temporary in zip(plan.files, temporaries, strict=True):
                os.replace(temporary, spec.path)
                trail.append(f"wrote {spec.path}")
            sync_directories(Path(spec.path) for spec in plan.files)
        except OSError as exc:
            failure = f"switching the files failed: {exc.strerror or exc}"
            return await _roll_back(plan, snapshot, trail, failure, reload_again=False)
        try:
            for name, step in _post_switch_steps(plan):
                label = describe(step, name)
                try:
                    await step()
                except Exception as exc:
                    trail.append(f"{label}: failed")
                    failure = f"{name} failed: {_reason(exc)}"
                    return await _roll_back(plan, snapshot, trail, failure, reload_again=True)
                trail.append(f"{label}: ok")
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                restore_snapshot(snapshot)  # leave the previous files in place; no time to reload
            raise
    finally:
        for temporary in temporaries:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
    served = plan.expected_fingerprint if plan.verify is not None else None
    message = f"installed {_count(len(plan.files))}"
    if served is not None:
        message += "; the endpoint serves the new certificate"
    return DeployResult(Outcome.SUCCEEDED, message, steps=tuple(trail), served_fingerprint=served)


async def _roll_back(
    plan: Plan, snapshot: Snapshot, trail: list[str], failure: str, *, reload_again: bool
) -> DeployResult:
    """Put the previous files back and, when the server may have seen the new ones, reload it again."""
    try:
        restore_snapshot(snapshot)
    except OSError as exc:
        trail.append("restoring the previous files: failed")
        message = f"{failure}; restoring the previous files failed too: {exc.strerror or exc}"
        return DeployResult(Outcome.ROLLBACK_FAILED, message, steps=tuple(trail))
    trail.append(f"restored the previous files from snapshot {snapshot.directory.name}")
    if reload_again and plan.reload is not None:
        label = describe(plan.reload, "reload")
        try:
            await plan.reload()
        except Exception as exc:
            trail.append(f"{label} (previous files): failed")
            message = f"{failure}; reload after restoring failed too: {_reason(exc)}"
            return DeployResult(Outcome.ROLLBACK_FAILED, message, steps=tuple(trail))
        trail.append(f"{label} (previous files): ok")
    return DeployResult(Outcome.ROLLED_BACK, f"{failure}; previous files restored", steps=tuple(trail))


def _reason(exc: Exception) -> str:
    if isinstance(exc, StepFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _count(files: int) -> str:
    return f"{files} file" if files == 1 else f"{files} files"
