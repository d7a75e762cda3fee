"""Leader election with a lease row, so N replicas run each periodic task once per tick.

A replica takes the lease when it is free or expired and renews it on each tick while leading. A leader
that crashes stops renewing; another replica takes over once ``ttl`` has passed, so a crash costs at most
one lease period. Replicas' clocks must agree to well within ``ttl`` (run NTP). Everything the leader
does is idempotent as well (dedup keys, compare-and-swap), so a brief overlap during a takeover (a
paused leader waking up after its lease expired) wastes work but duplicates nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from certctl.domain.clock import Clock
from certctl.store.db import unit_of_work
from certctl.store.repositories import leases

log = logging.getLogger("certctl.scheduler")
DEFAULT_TTL = timedelta(seconds=15)


def holder_name() -> str:
    """Unique per process and start (host, pid, random suffix): a restarted process is a new holder."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaderLease:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Clock,
        *,
        name: str = "scheduler",
        holder: str | None = None,
        ttl: timedelta = DEFAULT_TTL,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.name = name
        self.holder = holder or holder_name()
        self.ttl = ttl
        self.leading = False

    async def hold(self) -> bool:
        """Take or renew the lease; False (not leading) when another holder has it or the database
        cannot be reached, so a replica cut off from the database stops acting as leader."""
        now = self._clock.now()
        try:
            async with unit_of_work(self._engine) as uow:
                held = await leases.acquire(
                    uow.connection, name=self.name, holder=self.holder, now=now, expires_at=now + self.ttl
                )
        except Exception:
            log.warning("could not reach the database to hold the %s lease", self.name, exc_info=True)
            held = False
        if held != self.leading:
            log.info("%s %s leadership of %r", self.holder, "took" if held else "lost", self.name)
        self.leading = held
        return held

    async def release(self) -> None:
        """Give the lease up at shutdown so another replica takes over at once."""
        if not self.leading:
            return
        async with unit_of_work(self._engine) as uow:
            await leases.release(uow.connection, name=self.name, holder=self.holder)
        self.leading = False
