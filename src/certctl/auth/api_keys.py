"""API keys: random, prefixed, shown once, stored as SHA-256, compared in constant time.

A presented key is hashed and looked up by its digest; the stored digest is then compared with
``hmac.compare_digest`` so no timing depends on how much of a guess was right. Resolved keys are cached
for a couple of seconds, so revocation takes effect everywhere within that window.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from certctl.auth.principals import load_access
from certctl.domain.rbac import Access
from certctl.store.repositories.rows import API_KEYS

KEY_PREFIX = "cctl_"
LAST_USED_GRANULARITY = timedelta(minutes=1)


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:12]


def looks_like_key(secret: str) -> bool:
    return secret.startswith(KEY_PREFIX) and 20 <= len(secret) <= 200 and secret.isascii()


@dataclass(frozen=True)
class KeyPrincipal:
    key_id: str
    name: str
    access: Access
    expires_at: datetime | None
    last_used_at: datetime | None


class KeyAuthenticator:
    def __init__(self, engine: AsyncEngine, *, cache_seconds: float = 2.0) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, KeyPrincipal | None]] = {}
        self.generation = 0
        """Bumped by :meth:`forget` (a key revoked, rotated or its roles changed in this process)."""

    def forget(self) -> None:
        self._cache.clear()
        self.generation += 1  # dashboard sessions cached in this process re-read their key

    async def authenticate(self, secret: str, *, now: datetime) -> KeyPrincipal | None:
        if not looks_like_key(secret):
            return None
        hashed = digest(secret)
        cached = self._cache.get(hashed)
        if cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
            principal = cached[1]
        else:
            principal = await self._load(hashed, now=now)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[hashed] = (time.monotonic(), principal)
        if principal is None or (principal.expires_at is not None and principal.expires_at <= now):
            return None
        if principal.last_used_at is None or now - principal.last_used_at > LAST_USED_GRANULARITY:
            await self._touch(principal, now)
        return principal

    async def _load(self, hashed: str, *, now: datetime) -> KeyPrincipal | None:
        async with self._engine.connect() as connection:
            row = (
                (await connection.execute(select(API_KEYS).where(API_KEYS.c.secret_sha256 == hashed)))
                .mappings()
                .first()
            )
            if row is None or not hmac.compare_digest(row["secret_sha256"], hashed) or row["revoked_at"]:
                return None
            access = await load_access(connection, principal_type="api_key", principal_id=row["id"], now=now)
        return KeyPrincipal(
            key_id=row["id"],
            name=row["name"],
            access=access,
            expires_at=row["expires_at"],
            last_used_at=row["last_used_at"],
        )

    async def _touch(self, principal: KeyPrincipal, now: datetime) -> None:
        async with self._engine.begin() as connection:
            await connection.execute(
                update(API_KEYS).where(API_KEYS.c.id == principal.key_id).values(last_used_at=now)
            )
        hashed_entries = [
            h for h, (_, p) in self._cache.items() if p is not None and p.key_id == principal.key_id
        ]
        for hashed in hashed_entries:
            stamp, _ = self._cache[hashed]
            self._cache[hashed] = (stamp, _replace_last_used(principal, now))


def _replace_last_used(principal: KeyPrincipal, now: datetime) -> KeyPrincipal:
    return replace(principal, last_used_at=now)
