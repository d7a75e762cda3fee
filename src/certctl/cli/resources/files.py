"""Local files the CLI reads (CSRs, certificates, rules, passwords) and writes (keys, exports).

Anything holding a private key is written with mode 0600 from the first byte: the data goes to a
temporary file created 0600 in the target directory and is renamed over the target, so a reader
never sees a partial file and a key never exists with looser permissions. ``-`` means stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from certctl.cli.resources.common import CliError, UsageError

STDOUT = "-"
MAX_INPUT_BYTES = 1024 * 1024
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def read_bytes(path: Path, what: str) -> bytes:
    """The content of a small local input file, with a readable error when it is missing or huge."""
    if not path.exists():
        raise CliError(f"{what} file {path} does not exist")
    if path.is_dir():
        raise CliError(f"{what} file {path} is a directory")
    if path.stat().st_size > MAX_INPUT_BYTES:
        raise CliError(f"{what} file {path} is larger than {MAX_INPUT_BYTES // 1024} KiB")
    return path.read_bytes()


def read_text(path: Path, what: str) -> str:
    try:
        return read_bytes(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{what} file {path} is not UTF-8 text (PEM expected)") from None


def read_pem(path: Path, what: str, marker: str) -> str:
    """A PEM file that must hold a ``<marker>`` block, e.g. ``CERTIFICATE REQUEST``; ``PRIVATE KEY``
    also accepts the ``EC PRIVATE KEY`` and ``RSA PRIVATE KEY`` forms."""
    content = read_text(path, what)
    if "-----BEGIN " not in content or f"{marker}-----" not in content:
        raise CliError(f"{what} file {path} does not contain a PEM {marker} block")
    return content


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(read_text(path, what))
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} file {path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise CliError(f"{what} file {path} must hold a JSON object")
    return data


def read_password(path: Path) -> str:
    """A password from the first line of a file (so it never appears on a command line)."""
    lines = read_text(path, "password").splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise CliError(f"password file {path} is empty")
    return password


def check_writable(target: str, what: str, *, overwrite: bool = True) -> None:
    """Fail before any server call when ``target`` cannot be written (or already exists)."""
    if target == STDOUT:
        return
    path = Path(target)
    if not overwrite and (path.exists() or path.is_symlink()):
        raise CliError(f"{what} file {path} already exists; refusing to overwrite it")
    if path.is_dir():
        raise CliError(f"{what} path {path} is a directory")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CliError(f"directory {parent} for the {what} file does not exist")


def write_file(target: str, data: bytes, *, private: bool, exclusive: bool = False) -> None:
    """Write ``data`` to ``target`` atomically (0600 when ``private``), or to stdout for ``-``.

    ``exclusive`` refuses to replace an existing file (fresh private keys never clobber old ones).
    """
    if target == STDOUT:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    path = Path(target)
    mode = PRIVATE_MODE if private else PUBLIC_MODE
    descriptor, temporary = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=".certctl-")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(temporary, path)
            os.unlink(temporary)
        else:
            os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def refuse_terminal(target: str, what: str) -> None:
    """Binary or secret data is never sprayed onto a terminal by accident."""
    if target == STDOUT and sys.stdout.isatty():
        raise UsageError(f"refusing to write the {what} to a terminal; pass --out FILE or redirect stdout")


def remove_quietly(target: str) -> None:
    if target != STDOUT:
        with contextlib.suppress(OSError):
            Path(target).unlink()
