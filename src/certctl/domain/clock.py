"""Time is passed in, never read, in pure code; adapters use a :class:`Clock` so tests can freeze it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class FrozenClock:
    at: datetime

    def now(self) -> datetime:
        return self.at
