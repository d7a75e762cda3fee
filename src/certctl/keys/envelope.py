"""Secrets at rest: AES-256-GCM envelope under the master key.

Format of a sealed value: ``b"\\x01" + nonce(12) + ciphertext||tag``. The associated data binds a sealed
value to what it protects (e.g. ``b"ca-key:<ca id>"``) so ciphertexts cannot be swapped between rows.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from certctl.errors import ConfigurationError

_VERSION = b"\x01"
MASTER_KEY_FILE = "master.key"


class SealError(Exception):
    """A sealed value could not be opened (wrong master key, or tampered data)."""


class MasterKey:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError("the master key must be 32 bytes (base64-encoded in env or file)")
        self._aead = AESGCM(key)
        self._key = key

    def derive(self, *, purpose: str) -> bytes:
        """A 32-byte subkey for one purpose (HKDF-SHA256, RFC 5869), e.g. the ACME nonce MAC key: the
        same on every replica that shares the master key, and useless for anything else."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(self._key)

    def __repr__(self) -> str:
        return "MasterKey(<redacted>)"

    def seal(self, plaintext: bytes, *, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, *, aad: bytes) -> bytes:
        if len(sealed) < 29 or sealed[:1] != _VERSION:
            raise SealError("sealed value has an unknown format")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], aad)
        except InvalidTag as exc:
            raise SealError("sealed value does not open under this master key") from exc


def _decode(text: str, origin: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"the master key from {origin} is not valid base64") from exc
    if len(raw) != 32:
        raise ConfigurationError(f"the master key from {origin} must decode to 32 bytes, got {len(raw)}")
    return raw


def load_master_key(*, env_value: str | None, key_file: Path | None, data_dir: Path) -> MasterKey:
    """From ``CERTCTL_MASTER_KEY``, else a key file; on first start make ``<data-dir>/master.key`` (0600)."""
    if env_value:
        return MasterKey(_decode(env_value, "CERTCTL_MASTER_KEY"))
    path = key_file or data_dir / MASTER_KEY_FILE
    if path.exists():
        mode = path.stat().st_mode & 0o077
        if mode:
            raise ConfigurationError(f"{path} is readable by group or others; run: chmod 600 {path}")
        return MasterKey(_decode(path.read_text(), str(path)))
    if key_file is not None:
        raise ConfigurationError(f"master key file {path} does not exist")
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
    return MasterKey(key)
