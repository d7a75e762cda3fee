"""Session-cookie signing: the HMAC over length-prefixed fields, and the rotating keys it uses.

The keys are sealed under the master key in ``session_signing_keys``. One is active and signs; a retired
key still verifies cookies until ``verify_until`` (one session lifetime after its retirement), then it
is deleted at the next rotation. ``load`` fails when there is no active key, so a server cannot start
without one (``ensure`` makes the first).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from certctl.domain.clock import Clock
from certctl.errors import ConfigurationError
from certctl.keys.envelope import MasterKey, SealError
from certctl.store.db import read_only, unit_of_work
from certctl.store.models import SessionSigningKey, table_of

SIGNING_KEYS = table_of(SessionSigningKey)
COOKIE_DOMAIN = b"certctl-session-v1"
KEY_RELOAD_SECONDS = 5.0
KEY_REFRESH_SECONDS = 60.0


def length_prefixed(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def cookie_mac(secret: bytes, session_id: str, key_id: str) -> str:
    """HMAC-SHA256 over length-prefixed (domain, id, key id): unambiguous however the fields split."""
    message = (
        length_prefixed(COOKIE_DOMAIN)
        + length_prefixed(session_id.encode())
        + length_prefixed(key_id.encode())
    )
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_cookie(secret: bytes, session_id: str, key_id: str) -> str:
    return f"{session_id}.{key_id}.{cookie_mac(secret, session_id, key_id)}"


def split_cookie(value: str | None) -> tuple[str, str, str] | None:
    """(session id, key id, MAC) of a well-formed cookie value, else None."""
    if not value or len(value) > 200 or not value.isascii():
        return None
    parts = value.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


class SigningKeys:
    """The session-cookie HMAC keys: created, rotated and retired in the database, cached here."""

    def __init__(
        self, engine: AsyncEngine, master_key: MasterKey, clock: Clock, *, window: timedelta
    ) -> None:
        self._engine = engine
        self._master_key = master_key
        self._clock = clock
        self._window = window
        self._keys: dict[str, bytes] = {}
        self._active: str | None = None
        self._loaded_at = float("-inf")

    def _aad(self, key_id: str) -> bytes:
        return f"session-signing-key:{key_id}".encode()

    async def ensure(self) -> None:
        """Make a signing key when there is no active one this master key opens (the first start, or a
        master key replaced: cookies signed before then stop verifying)."""
        async with read_only(self._engine) as connection:
            active = (
                await connection.execute(
                    select(SIGNING_KEYS.c.id, SIGNING_KEYS.c.secret_sealed).where(
                        SIGNING_KEYS.c.retired_at.is_(None)
                    )
                )
            ).all()
        if not any(self._opens(key_id, sealed) for key_id, sealed in active):
            await self.rotate()

    def _opens(self, key_id: str, sealed: bytes) -> bool:
        try:
            self._master_key.open(sealed, aad=self._aad(key_id))
        except SealError:
            return False
        return True

    async def load(self) -> None:
        """Read the keys; fail (start-up stops) when there is no active one."""
        now = self._clock.now()
        async with read_only(self._engine) as connection:
            found = (await connection.execute(select(SIGNING_KEYS))).mappings().all()
        keys: dict[str, bytes] = {}
        active: tuple[datetime, str] | None = None
        for row in found:
            if row["verify_until"] is not None and row["verify_until"] <= now:
                continue
            try:
                keys[row["id"]] = self._master_key.open(row["secret_sealed"], aad=self._aad(row["id"]))
            except SealError:  # sealed under a previous master key: it verifies nothing any more
                continue
            if row["retired_at"] is None and (active is None or row["created_at"] > active[0]):
                active = (row["created_at"], row["id"])
        if active is None:
            raise ConfigurationError(
                "no session signing key opens under this master key; start the server once to create one"
            )
        self._keys, self._active, self._loaded_at = keys, active[1], time.monotonic()

    async def signing(self) -> tuple[str, bytes]:
        if self._active is None or time.monotonic() - self._loaded_at > KEY_REFRESH_SECONDS:
            await self.load()
        assert self._active is not None
        return self._active, self._keys[self._active]

    async def verifying(self, key_id: str) -> bytes | None:
        """The secret of a key that may still verify cookies; an unknown id reloads (throttled)."""
        if time.monotonic() - self._loaded_at > KEY_REFRESH_SECONDS or (
            key_id not in self._keys and time.monotonic() - self._loaded_at > KEY_RELOAD_SECONDS
        ):
            await self.load()
        return self._keys.get(key_id)

    async def rotate(self) -> str:
        """A new active key; the previous one verifies for one more session lifetime; dead keys go."""
        now = self._clock.now()
        key_id = secrets.token_hex(8)
        sealed = self._master_key.seal(secrets.token_bytes(32), aad=self._aad(key_id))
        async with unit_of_work(self._engine) as uow:
            connection = uow.connection
            await connection.execute(
                delete(SIGNING_KEYS).where(
                    SIGNING_KEYS.c.verify_until.is_not(None), SIGNING_KEYS.c.verify_until <= now
                )
            )
            await connection.execute(
                update(SIGNING_KEYS)
                .where(SIGNING_KEYS.c.retired_at.is_(None))
                .values(retired_at=now, verify_until=now + self._window)
            )
            await connection.execute(
                SIGNING_KEYS.insert().values(id=key_id, secret_sealed=sealed, created_at=now)
            )
        self._loaded_at = float("-inf")
        return key_id

    async def describe(self) -> list[dict[str, Any]]:
        """Ids and dates only (never the secret), newest first."""
        async with read_only(self._engine) as connection:
            found = await connection.execute(
                select(
                    SIGNING_KEYS.c.id,
                    SIGNING_KEYS.c.created_at,
                    SIGNING_KEYS.c.retired_at,
                    SIGNING_KEYS.c.verify_until,
                ).order_by(SIGNING_KEYS.c.created_at.desc())
            )
            return [dict(r) for r in found.mappings()]
