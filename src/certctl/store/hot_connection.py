"""The driver connection of the hot paths (:class:`certctl.store.db.DriverPool`): its socket stays
registered with the event loop between statements.

The driver waits for each answer by registering the socket with the event loop and unregistering it
once the answer is read: a statement costs several ``epoll_ctl`` calls and a timer, more than the
bytes it moves. Here the first wait registers a reader that stays until the connection closes; a wait
is a future that the reader resolves. Data that arrives while no statement waits (a notice, the server
closing the connection) unregisters the reader, so a readable socket nobody reads cannot keep the loop
busy; the next wait registers it again.

Waits for writing (rare: the socket buffer is full), waits with a timeout and waits on another event
loop take the driver's own path, after the reader is taken off. A cancelled wait leaves the statement
unfinished: the pool closes such a connection instead of reusing it.

The connection also carries what :mod:`certctl.store.pg_statements` prepared on it (``statements``).
The driver answers a rollback (of a transaction or of a savepoint) on a connection where it has
prepared statements of its own with ``DEALLOCATE ALL``; every rollback here therefore forgets those
statements too, and they are prepared again on next use.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import waiting

READ = int(waiting.Wait.R)
WRITE = int(waiting.Wait.W)
READY_R = waiting.Ready.R


class HotConnection(psycopg.AsyncConnection[Any]):
    _reader_loop: asyncio.AbstractEventLoop | None = None
    _reader_fd: int = -1
    _waiter: asyncio.Future[None] | None = None
    statements: Any = None
    """What :mod:`certctl.store.pg_statements` keeps for this session (``prepared``: SQL -> name)."""

    def forget_prepared(self) -> None:
        if self.statements is not None:
            self.statements.forget()

    @asynccontextmanager
    async def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> AsyncIterator[psycopg.AsyncTransaction]:
        committed = False
        try:
            async with super().transaction(savepoint_name, force_rollback) as block:
                yield block
            committed = block.status is block.Status.COMMITTED
        finally:
            if not committed:  # rolled back, so the driver may have deallocated everything
                self.forget_prepared()

    async def rollback(self) -> None:
        try:
            await super().rollback()
        finally:
            self.forget_prepared()

    async def wait(
        self,
        gen: Any,
        interval: float = 0.1,
        timeout: float | None = None,  # noqa: ASYNC109 (the driver's signature, which it overrides)
    ) -> Any:
        try:
            state = next(gen)
        except StopIteration as done:
            return done.value
        loop = asyncio.get_running_loop()
        if timeout is not None or (self._reader_loop is not None and self._reader_loop is not loop):
            self._unregister()
            return await super().wait(_resumed(gen, state), interval, timeout)
        fileno = self.pgconn.socket
        try:
            while True:
                if state & WRITE:
                    ready = _ready_now(fileno, state)
                    if not ready:  # the buffer is full: let the driver wait for it
                        self._unregister()
                        return await super().wait(_resumed(gen, state), interval, timeout)
                    state = gen.send(ready)
                    continue
                if self._reader_fd != fileno:
                    self._unregister()
                    loop.add_reader(fileno, self._readable)
                    self._reader_loop, self._reader_fd = loop, fileno
                waiter = self._waiter = loop.create_future()
                try:
                    await waiter
                finally:
                    self._waiter = None
                state = gen.send(READY_R)
        except StopIteration as done:
            return done.value
        except OSError as error:
            self._unregister()
            raise psycopg.OperationalError("connection socket closed") from error
        except BaseException:
            self._unregister()
            raise

    def _readable(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            self._unregister()  # nobody reads: do not let a readable socket spin the loop
        else:
            waiter.set_result(None)

    def _unregister(self) -> None:
        loop, fileno = self._reader_loop, self._reader_fd
        self._reader_loop, self._reader_fd = None, -1
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(OSError, ValueError):  # the socket may be closed already
                loop.remove_reader(fileno)

    async def close(self) -> None:
        self._unregister()
        await super().close()


def _resumed(gen: Any, state: int) -> Any:
    """``gen`` as if it had not started: yields ``state`` first (for the driver's own wait)."""
    while True:
        ready = yield state
        try:
            state = gen.send(ready)
        except StopIteration as done:
            return done.value


def _ready_now(fileno: int, state: int) -> int:
    readable, writable, _ = select.select(
        [fileno] if state & READ else [], [fileno] if state & WRITE else [], [], 0
    )
    return (READ if readable else 0) | (WRITE if writable else 0)
