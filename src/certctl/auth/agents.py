"""Agent credentials: random, prefixed, shown once, SHA-256 at rest, resolved through a cache.

An agent credential is not an API key: it names one agent and opens only that agent's own routes
(``/api/v1/agents/{its id}/...``). Every agent calls in every 30 to 60 seconds, so a resolved credential
is kept for minutes (:data:`AGENT_CACHE_SECONDS`): a cache shorter than the agents' interval would always
miss. Changes stay prompt:

- retirement and rotation call :meth:`AgentAuthenticator.forget` on the process that makes them, so
  they take effect there at once;
- every :data:`AGENT_SYNC_SECONDS` (on the next request) the cache re-reads the agents changed lately
  (``updated_at``, looking back :data:`AGENT_SYNC_LOOKBACK` to allow for clock skew between replicas) and
  drops what no longer holds (another status, a credential no longer current), so a change made on
  another server process or replica takes effect here within that time;
- a previous credential is never accepted past the end of its grace period, cached or not.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from certctl.domain.agents import AGENT_CREDENTIAL_PREFIX, ENROLMENT_TOKEN_PREFIX
from certctl.store.db import autocommit_reads
from certctl.store.repositories import agents

AGENT_CACHE_SECONDS = 300.0
"""How long a resolved credential is trusted at most without reading it again (the bound when changes
cannot be noticed otherwise, e.g. replicas whose clocks disagree by more than the look-back)."""
AGENT_SYNC_SECONDS = 5.0
"""How often the cache asks which agents changed: the window in which another process's change shows."""
AGENT_SYNC_LOOKBACK = timedelta(seconds=60)
AGENT_CACHE_ENTRIES = 50_000
"""At most this many credentials are cached; the least recently used one makes room."""

log = logging.getLogger("certctl.auth")


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


@dataclass(frozen=True)
class _Entry:
    principal: AgentPrincipal
    cached_at: float
    """``time.monotonic()`` when it was read."""
    valid_until: datetime | None
    """End of the grace period when the credential is the agent's previous one, else None."""


class AgentAuthenticator:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        cache_seconds: float = AGENT_CACHE_SECONDS,
        sync_seconds: float = AGENT_SYNC_SECONDS,
        max_entries: int = AGENT_CACHE_ENTRIES,
    ) -> None:
        self._engine = engine
        self._cache_seconds = cache_seconds
        self._sync_seconds = sync_seconds
        self._max_entries = max_entries
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._digests: dict[str, set[str]] = {}  # agent id -> its cached credential digests
        self._changes = 0  # bumped by forget(): a read that overlapped a change is not cached
        self._synced_at = float("-inf")
        self._changed_since: datetime | None = None
        self._syncing = False

    def forget(self, agent_id: str | None = None) -> None:
        """Drop the cached credentials of one agent (every agent when None), after a change to it."""
        self._changes += 1
        if agent_id is None:
            self._cache.clear()
            self._digests.clear()
            return
        for hashed in self._digests.pop(agent_id, set()):
            self._cache.pop(hashed, None)

    def cached_agents(self) -> set[str]:
        """The agents with a credential in the cache."""
        return set(self._digests)

    async def authenticate(self, secret: str, *, now: datetime) -> AgentPrincipal | None:
        if not looks_like(secret, AGENT_CREDENTIAL_PREFIX):
            return None
        await self._sync(now)
        hashed = digest(secret)
        entry = self._cache.get(hashed)
        if entry is not None:
            fresh = time.monotonic() - entry.cached_at < self._cache_seconds
            if fresh and (entry.valid_until is None or now < entry.valid_until):
                self._cache.move_to_end(hashed)
                return entry.principal
            self._drop(hashed)
        changes_before = self._changes
        async with autocommit_reads(self._engine) as connection:
            row = await agents.agent_by_credential(connection, hashed, now=now)
        if row is None:
            return None  # unknown credentials are not cached: guesses cannot fill the cache
        principal = AgentPrincipal(
            agent_id=row["id"], name=row["name"], status=row["status"], proxy=bool(row["proxy"])
        )
        if self._changes == changes_before:
            previous = row["credential_sha256"] != hashed
            valid_until = row["previous_valid_until"] if previous else None
            self._remember(hashed, _Entry(principal, time.monotonic(), valid_until))
        return principal

    async def _sync(self, now: datetime) -> None:
        """Drop what changed since the last look: one small read every few seconds, made by whichever
        request comes first (the others go on meanwhile)."""
        if self._syncing or time.monotonic() - self._synced_at < self._sync_seconds:
            return
        self._syncing = True
        try:
            since = self._changed_since
            if since is not None and self._cache:
                async with autocommit_reads(self._engine) as connection:
                    changed = await agents.agents_changed_since(connection, since)
                for row in changed:
                    self._reconcile(row["id"], status=row["status"], current=row["credential_sha256"])
            self._changed_since = now - AGENT_SYNC_LOOKBACK
            self._synced_at = time.monotonic()
        except Exception:  # cannot tell what changed: trust nothing cached
            log.warning("could not check which agents changed; dropping the agent cache", exc_info=True)
            self.forget()
        finally:
            self._syncing = False

    def _reconcile(self, agent_id: str, *, status: str, current: str) -> None:
        """Drop what is cached of this agent unless it still holds: same status, current credential (a
        credential that became the previous one is read again for the end of its grace period)."""
        stale = [
            hashed
            for hashed in self._digests.get(agent_id, ())
            if hashed != current or self._cache[hashed].principal.status != status
        ]
        if stale:
            self._changes += 1
            for hashed in stale:
                self._drop(hashed)

    def _remember(self, hashed: str, entry: _Entry) -> None:
        self._cache[hashed] = entry
        self._cache.move_to_end(hashed)
        self._digests.setdefault(entry.principal.agent_id, set()).add(hashed)
        while len(self._cache) > self._max_entries:
            self._drop(next(iter(self._cache)))

    def _drop(self, hashed: str) -> None:
        entry = self._cache.pop(hashed, None)
        if entry is None:
            return
        digests = self._digests.get(entry.principal.agent_id)
        if digests is not None:
            digests.discard(hashed)
            if not digests:
                del self._digests[entry.principal.agent_id]
