"""Connections spread evenly over the worker processes that share a listening socket.

With ``--workers N`` every worker waits on the same listening socket and the kernel wakes all of them
for each new connection; whichever runs first takes it. Under light load that is nearly always the same
worker, so a handful of long-lived keep-alive clients (ACME clients, agents behind one proxy, a load
balancer's pooled connections) all land on one process while the others idle.

Here each worker publishes how many connections it holds (open ones plus TLS handshakes under way) in a
slot of a table shared by all workers (anonymous shared memory, made before the fork). A worker woken
for a new connection takes it at once only if no other live worker holds fewer; otherwise it stops
listening for ``DEFER_SECONDS``, leaving the connection to the less loaded worker, which was woken too.
If the connection is still waiting when that time is up (the other worker is busy or gone), the deferring
worker takes one anyway, so nothing waits longer than that. A slot whose worker has not refreshed it for
``STALE_SECONDS`` (a worker that died) no longer counts.

One worker (the default) listens with the event loop's own server, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import uvicorn

log = logging.getLogger(__name__)

DEFER_SECONDS = 0.02
RETRY_SECONDS = 1.0
"""After an accept failed for want of resources (descriptors, memory), as the event loop's own server."""
REFRESH_SECONDS = 0.05
STALE_SECONDS = 1.0
ACCEPTS_PER_WAKE = 16


class LoadTable:
    """Per worker, connections held and when that was last written: int64 pairs in shared memory.

    Aligned 8-byte stores and loads are single instructions on the platforms served, so a reader sees
    either the old or the new figure, never a torn one."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._memory = mmap.mmap(-1, 16 * workers)  # anonymous and shared: survives fork
        self._cells = memoryview(self._memory).cast("q")

    def publish(self, index: int, connections: int) -> None:
        self._cells[2 * index] = connections
        self._cells[2 * index + 1] = time.monotonic_ns()

    def least_other(self, index: int) -> int | None:
        """The fewest connections any other live worker holds (None: no other live worker)."""
        fresh_after = time.monotonic_ns() - int(STALE_SECONDS * 1e9)
        fewest: int | None = None
        for other in range(self.workers):
            if other == index or self._cells[2 * other + 1] < fresh_after:
                continue
            held = self._cells[2 * other]
            if fewest is None or held < fewest:
                fewest = held
        return fewest


class BalancedListener:
    """Accepts on a shared listening socket for one worker, deferring to less loaded workers.

    Quacks like the ``asyncio.Server`` uvicorn keeps (``close``, ``wait_closed``)."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        *,
        ssl_context: ssl.SSLContext | None,
        held: Callable[[], int],
        table: LoadTable,
        index: int,
    ) -> None:
        self._sock = sock
        self._factory = protocol_factory
        self._ssl = ssl_context
        self._held = held  # this worker's open connections on this listener
        self._table = table
        self._index = index
        self._loop = asyncio.get_running_loop()
        self._handshaking = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._deferred: asyncio.TimerHandle | None = None
        self._closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._readable)
        self._refresher = self._loop.call_later(REFRESH_SECONDS, self._refresh)
        self._publish()

    def load(self) -> int:
        return self._held() + self._handshaking

    def _publish(self) -> None:
        self._table.publish(self._index, self.load())

    def _refresh(self) -> None:  # closed connections lower the figure without waking the listener
        self._publish()
        if not self._closed:
            self._refresher = self._loop.call_later(REFRESH_SECONDS, self._refresh)

    def _readable(self) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            fewest = self._table.least_other(self._index)
            if fewest is not None and self.load() > fewest:
                self._defer()
                return
            if not self._accept_one():
                return

    def _defer(self, seconds: float = DEFER_SECONDS, *, take_one: bool = True) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._deferred = self._loop.call_later(seconds, self._resume, take_one)

    def _resume(self, take_one: bool) -> None:
        self._deferred = None
        if self._closed:
            return
        if take_one:  # still waiting after the grace period: the others are busy, take it
            self._accept_one()
        if self._deferred is None:
            self._loop.add_reader(self._sock.fileno(), self._readable)

    def _accept_one(self) -> bool:
        try:
            conn, _address = self._sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return False  # another worker took it, or the client gave up first
        except OSError as exc:  # out of descriptors or memory: stop listening for a while
            log.warning("accept failed: %s; listening again in %.0f s", exc, RETRY_SECONDS)
            if self._deferred is None:
                self._defer(RETRY_SECONDS, take_one=False)
            return False
        conn.setblocking(False)
        self._handshaking += 1
        self._publish()
        task = self._loop.create_task(self._connect(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl)
        except Exception as exc:  # a failed handshake or a peer gone: that connection only
            log.debug("connection dropped during set-up: %s", exc)
            conn.close()
        finally:
            self._handshaking -= 1
            self._publish()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._refresher.cancel()
        if self._deferred is not None:
            self._deferred.cancel()
        else:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._sock.fileno())
        self._table.publish(self._index, 1 << 62)  # a closing worker takes no more connections

    async def wait_closed(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class BalancedServer(uvicorn.Server):
    """A uvicorn server whose listening sockets are shared with other workers through a ``LoadTable``."""

    def __init__(self, config: uvicorn.Config, *, table: LoadTable, index: int) -> None:
        super().__init__(config)
        self._table = table
        self._index = index

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan and state, no listener of its own
        config = self.config

        def create_protocol() -> Any:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )

        held = self.server_state.connections.__len__
        self.servers = [
            BalancedListener(  # type: ignore[misc]
                sock,
                create_protocol,
                ssl_context=config.ssl,
                held=held,
                table=self._table,
                index=self._index,
            )
            for sock in sockets or []
        ]
