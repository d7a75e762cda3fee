"""What every use case needs, built once at start-up and passed in (never a module global)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from certctl.domain.clock import Clock, SystemClock
from certctl.keys.envelope import MasterKey


@dataclass
class ServiceContext:
    engine: AsyncEngine
    master_key: MasterKey
    public_http_url: str
    clock: Clock = field(default_factory=SystemClock)
    expiring_within: timedelta = timedelta(days=30)
    cache_ttl_seconds: float = 5.0
    approval_ttl: timedelta = timedelta(hours=72)
    """How long a request held for four-eyes approval stays decidable."""
