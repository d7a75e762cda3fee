"""Agent heartbeats, written in batches: a fleet of agents reports every minute, and one UPDATE per
heartbeat would make the database the bottleneck of the cheapest call there is.

A heartbeat is kept in memory (the newest per agent) and written, with every other heartbeat that arrived
meanwhile, at most :data:`HEARTBEAT_FLUSH_SECONDS` later in one transaction. Reads of the agent registry
on the same process flush first, so they see every heartbeat it answered; other processes and replicas see
``last_seen_at`` at most that much later. The time recorded is when the heartbeat arrived, not when it was
written. Heartbeats of the last second before a process stops may not be written: the agent's next one
(a minute later) records it again.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from certctl.store.db import unit_of_work
from certctl.store.repositories import agents

HEARTBEAT_FLUSH_SECONDS = 1.0

log = logging.getLogger("certctl.agents")


class HeartbeatBuffer:
    def __init__(self, engine: AsyncEngine, *, flush_seconds: float = HEARTBEAT_FLUSH_SECONDS) -> None:
        self._engine = engine
        self._flush_seconds = flush_seconds
        self._pending: dict[str, dict[str, Any]] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def add(self, *, agent_id: str, facts: dict[str, str], seen_at: datetime) -> None:
        """Record a heartbeat; it is written within the flush interval (a newer one replaces it)."""
        self._pending[agent_id] = facts | {"last_seen_at": seen_at}
        loop = asyncio.get_running_loop()
        flusher = self._flusher
        if flusher is None or flusher.done() or flusher.get_loop() is not loop:
            self._flusher = loop.create_task(self._flush_later())

    async def flush(self) -> int:
        """Write every pending heartbeat now, in one transaction. Returns how many it sent (a retired
        agent's is not recorded).

        Flushes run one at a time, so an older heartbeat of an agent never overwrites a newer one; rows
        are updated in id order, so two processes flushing the same agents cannot deadlock."""
        async with self._serial():
            if not self._pending:
                return 0
            batch, self._pending = self._pending, {}
            rows = [{"agent_id": agent_id, **values} for agent_id, values in sorted(batch.items())]
            try:
                async with unit_of_work(self._engine) as uow:
                    await agents.touch_agents(uow.connection, rows)
            except BaseException:
                for agent_id, values in batch.items():  # newer heartbeats that arrived meanwhile win
                    self._pending.setdefault(agent_id, values)
                raise
            return len(rows)

    async def _flush_later(self) -> None:
        while True:
            await asyncio.sleep(self._flush_seconds)
            try:
                await self.flush()
            except Exception:  # the database may be briefly away: keep the heartbeats and retry
                log.warning(
                    "could not record %d agent heartbeats; retrying", len(self._pending), exc_info=True
                )
            if not self._pending:
                return

    def _serial(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock
