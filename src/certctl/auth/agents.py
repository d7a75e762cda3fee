"""Agent credentials: random, prefixed, shown once, SHA-256 at rest, resolved with a short cache.

An agent credential is not an API key: it names one agent and opens only that agent's own routes
(``/api/v1/agents/{its id}/...``). Retirement takes effect within the cache window.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from certctl.domain.agents import AGENT_CREDENTIAL_PREFIX, ENROLMENT_TOKEN_PREFIX
from certctl.store.db import read_only
from certctl.store.repositories import agents


def new_credential() -> str:
    return AGENT_CREDENTIAL_PREFIX + secrets.token_urlsafe(32)


def new_enrolment_token() -> str:
    return ENROLMENT_TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like(secret: str, prefix: str) -> bool:
    return secret.startswith(prefix) and 20 <= len(secret) <= 200 and secret.isascii()


@dataclass(frozen=True)
class AgentPrincipal:
    agent_id: str
    name: str
    status: str
    proxy: bool


class AgentAuthenticator:
    def __init__(self, engine: AsyncEngine, *, cache_seconds: float = 2.0) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, AgentPrincipal | None]] = {}

    def forget(self) -> None:
        self._cache.clear()

    async def authenticate(self, secret: str, *, now: datetime) -> AgentPrincipal | None:
        if not looks_like(secret, AGENT_CREDENTIAL_PREFIX):
            return None
        hashed = digest(secret)
        cached = self._cache.get(hashed)
        if cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
            return cached[1]
        async with read_only(self._engine) as connection:
            row = await agents.agent_by_credential(connection, hashed, now=now)
        principal = None
        if row is not None:
            principal = AgentPrincipal(
                agent_id=row["id"], name=row["name"], status=row["status"], proxy=bool(row["proxy"])
            )
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[hashed] = (time.monotonic(), principal)
        return principal
