"""Group commit: many concurrent writers share one transaction.

Issuing is the hot write path. Instead of one BEGIN/INSERT x3/COMMIT per certificate, concurrent
requests queue their rows; whichever arrives while no flush is running flushes everything queued in one
transaction (``executemany``), and the next flush starts as soon as that one commits. No timer, no
permanent task: under light load a batch is one request and costs what a direct write costs.

If a batch fails as a whole (a foreign key that vanished, a lost connection), each of its items is
retried alone, so one bad item never fails its neighbours.

On PostgreSQL, when one item alone is stored atomically (``single_is_atomic``: one statement), a
request that arrives while a flush of a single item is running, with nothing queued, stores its item
alone on a spare connection, as long as fewer than ``SOLO_FLUSHES`` do so already: under light
concurrency each write is one statement with no wait behind another flush (a batch costs a transaction
of several statements). Under load (a batch of several running, items queued, no spare connection) the
requests queue and share batches as above, which costs less per item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from certctl.store.db import hot, spare_hot_connection

SOLO_FLUSHES = 4
"""Items stored alone at the same time, beside the running flush (PostgreSQL, ``single_is_atomic``)."""

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
Flush = Callable[[Any, Sequence[Item]], Awaitable[Sequence[Outcome | BaseException]]]
"""Writes a batch on a :func:`certctl.store.db.hot` connection (prebuilt statements only), in a transaction
unless the batch is one item and the committer was told that a single item is stored atomically."""


@dataclass
class _Entry(Generic[Item, Outcome]):
    item: Item
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommitter(Generic[Item, Outcome]):
    def __init__(
        self,
        engine: AsyncEngine,
        flush: Flush[Item, Outcome],
        *,
        max_batch: int = 128,
        single_is_atomic: bool = False,
    ) -> None:
        """``single_is_atomic``: ``flush`` stores a batch of one item atomically by itself (one
        statement), so no transaction is opened around it (two round trips fewer under light load)."""
        self._engine = engine
        self._flush = flush
        self._max_batch = max_batch
        self._single_is_atomic = single_is_atomic
        self._pending: list[_Entry[Item, Outcome]] = []
        self._flushing = False
        self._solo = 0
        self._running_batch = 0
        self._drainers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Outcome:
        """Queue one item and wait until it is committed (or refused: the flush's exception is raised)."""
        if (
            self._flushing
            and not self._pending
            and self._running_batch <= 1
            and self._single_is_atomic
            and self._solo < SOLO_FLUSHES
            and spare_hot_connection(self._engine)
        ):
            return await self._alone(item)
        entry: _Entry[Item, Outcome] = _Entry(item)
        self._pending.append(entry)
        if not self._flushing:
            self._flushing = True
            try:
                while not entry.future.done():
                    await self._flush_once()
            finally:
                self._flushing = False
                if self._pending:
                    self._hand_off()
        return await entry.future

    async def _alone(self, item: Item) -> Outcome:
        """Store one item by itself (one statement, atomic alone) beside the running flush."""
        self._solo += 1
        try:
            async with hot(self._engine) as connection:
                (outcome,) = await self._flush(connection, [item])
        finally:
            self._solo -= 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _hand_off(self) -> None:
        """The submitter that flushed is done; a short-lived task flushes what queued meanwhile."""
        self._flushing = True
        task = asyncio.get_running_loop().create_task(self._drain())
        self._drainers.add(task)
        task.add_done_callback(self._drainers.discard)

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._flush_once()
        finally:
            self._flushing = False

    async def _flush_once(self) -> None:
        batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
        self._running_batch = len(batch)
        outcomes: Sequence[Outcome | BaseException]
        transaction = len(batch) > 1 or not self._single_is_atomic
        try:
            async with hot(self._engine, transaction=transaction) as connection:
                outcomes = await self._flush(connection, [e.item for e in batch])
        except Exception as exc:
            if len(batch) > 1:
                await self._one_by_one(batch)
                return
            outcomes = [exc]
        for entry, outcome in zip(batch, outcomes, strict=True):
            _settle(entry.future, outcome)

    async def _one_by_one(self, batch: list[_Entry[Item, Outcome]]) -> None:
        for entry in batch:
            try:
                async with hot(self._engine, transaction=True) as connection:
                    (outcome,) = await self._flush(connection, [entry.item])
            except Exception as exc:
                outcome = exc
            _settle(entry.future, outcome)


def _settle(future: asyncio.Future[Outcome], outcome: Outcome | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
