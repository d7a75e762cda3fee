"""Snapshots of the files a deployment replaces, and the atomic writes that install or restore them.

Before a deployment switches files it copies the installed versions into
``<state_dir>/snapshots/<UTC timestamp>-<id>/`` with a ``manifest.json`` (path, whether the file
existed, owner, mode, SHA-256). A rollback puts exactly those bytes, owner and mode back, and deletes
files that did not exist before. The directory is 0700 and copies of key files are 0600 whatever their
installed mode, because the state directory may be backed up by people who may not read keys. Only the
newest ``keep`` snapshots are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_SNAPSHOT_NAME = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{6}$")


@dataclass(frozen=True)
class SnapshotEntry:
    path: Path
    existed: bool
    stored: str | None = None
    """File name of the copy inside the snapshot directory."""
    uid: int = -1
    gid: int = -1
    mode: int = 0
    sha256: str | None = None


@dataclass(frozen=True)
class Snapshot:
    directory: Path
    entries: tuple[SnapshotEntry, ...]


def take_snapshot(
    root: Path,
    files: Sequence[tuple[Path, bytes | None, bool]],
    *,
    keep: int,
    now: datetime | None = None,
) -> Snapshot:
    """Store ``(path, installed bytes or None, secret)`` for each file, then prune to ``keep``."""
    moment = now or datetime.now(UTC)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory = root / f"{moment.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{os.urandom(3).hex()}"
    directory.mkdir(mode=0o700)
    entries: list[SnapshotEntry] = []
    try:
        for index, (path, content, secret) in enumerate(files):
            if content is None:
                entries.append(SnapshotEntry(path=path, existed=False))
                continue
            installed = path.stat()
            stored = f"{index}-{path.name}"
            mode = stat.S_IMODE(installed.st_mode)
            _write_new(directory / stored, content, 0o600 if secret else mode)
            with contextlib.suppress(PermissionError):
                os.chown(directory / stored, installed.st_uid, installed.st_gid)
            entries.append(
                SnapshotEntry(
                    path=path,
                    existed=True,
                    stored=stored,
                    uid=installed.st_uid,
                    gid=installed.st_gid,
                    mode=mode,
                    sha256=hashlib.sha256(content).hexdigest(),
                )
            )
        _write_manifest(directory, moment, entries)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    prune_snapshots(root, keep=keep)
    return Snapshot(directory=directory, entries=tuple(entries))


def _write_new(path: Path, content: bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        _write_all(descriptor, content)
        os.fchmod(descriptor, mode)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_manifest(directory: Path, moment: datetime, entries: Sequence[SnapshotEntry]) -> None:
    manifest = {
        "created_at": moment.astimezone(UTC).isoformat(),
        "files": [
            {
                "path": str(entry.path),
                "existed": entry.existed,
                "stored": entry.stored,
                "uid": entry.uid if entry.existed else None,
                "gid": entry.gid if entry.existed else None,
                "mode": f"{entry.mode:04o}" if entry.existed else None,
                "sha256": entry.sha256,
            }
            for entry in entries
        ],
    }
    _write_new(directory / "manifest.json", json.dumps(manifest, indent=2).encode() + b"\n", 0o600)


def prune_snapshots(root: Path, *, keep: int) -> None:
    """Delete all but the newest ``keep`` snapshot directories (names sort by time)."""
    names = sorted(entry.name for entry in root.iterdir() if _SNAPSHOT_NAME.match(entry.name))
    for name in names[: max(len(names) - max(keep, 1), 0)]:
        shutil.rmtree(root / name, ignore_errors=True)


def restore_snapshot(snapshot: Snapshot) -> None:
    """Put every snapshotted file back (bytes, owner, mode); remove files that did not exist.

    Tries every file even when one fails, then raises OSError naming the files that could not be
    restored.
    """
    failures: list[str] = []
    for entry in snapshot.entries:
        try:
            if not entry.existed:
                entry.path.unlink(missing_ok=True)
                continue
            assert entry.stored is not None
            content = (snapshot.directory / entry.stored).read_bytes()
            temporary = write_temporary(entry.path, content, uid=entry.uid, gid=entry.gid, mode=entry.mode)
            try:
                os.replace(temporary, entry.path)
            finally:
                temporary.unlink(missing_ok=True)
        except OSError as exc:
            failures.append(f"{entry.path} ({exc.strerror or exc})")
    with contextlib.suppress(OSError):
        sync_directories(entry.path for entry in snapshot.entries)
    if failures:
        raise OSError(f"could not restore {', '.join(failures)}")


def write_temporary(path: Path, content: bytes, *, uid: int, gid: int, mode: int) -> Path:
    """Write ``content`` beside ``path`` (same file system, so a rename is atomic) with its final owner
    and mode, flushed to disk; returns the temporary path, named ``.<name>.certctl-tmp-<random>``."""
    temporary = path.with_name(f".{path.name}.certctl-tmp-{os.urandom(6).hex()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        _write_all(descriptor, content)
        if (uid, gid) != (os.geteuid(), os.getegid()):
            os.fchown(descriptor, uid, gid)
        os.fchmod(descriptor, mode)
        os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        temporary.unlink(missing_ok=True)
        raise
    os.close(descriptor)
    return temporary


def _write_all(descriptor: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(descriptor, view) :]


def sync_directories(paths: Iterable[Path]) -> None:
    """Make renames durable: fsync each parent directory once (file systems that cannot: ignored)."""
    for directory in {Path(path).parent for path in paths}:
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            with contextlib.suppress(OSError):
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
