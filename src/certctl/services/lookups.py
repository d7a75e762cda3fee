"""Short-lived in-process cache of profile and issuer rows for the issuance hot path."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.errors import NotFound
from certctl.store.repositories import rows


class RowCache:
    def __init__(self, table: Table, kind: str, ttl_seconds: float) -> None:
        self._table = table
        self._kind = kind
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def invalidate(self) -> None:
        self._entries.clear()

    def peek(self, ref: str) -> dict[str, Any] | None:
        """The cached row if it is still fresh, without touching the database."""
        cached = self._entries.get(ref)
        if cached and time.monotonic() - cached[0] < self._ttl:
            return cached[1]
        return None

    async def find(self, connection: AsyncConnection, ref: str) -> dict[str, Any]:
        cached = self.peek(ref)
        if cached is not None:
            return cached
        row = await rows.find(connection, self._table, ref)
        if row is None:
            raise NotFound(f"{self._kind} {ref!r} does not exist")
        stamp = time.monotonic()
        self._entries[row["id"]] = (stamp, row)
        self._entries[row["name"]] = (stamp, row)
        return row
