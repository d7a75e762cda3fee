"""A small HTTP/1.1 client for load generation: a fixed pool of keep-alive TLS connections.

A bench's load generator shares the machine with the server it measures, so every millisecond of client
CPU is taken from the server. On the two-core bench machine an ``httpx2.AsyncClient`` spent 1.5 to 2 ms of
CPU per request, and could not send 500 requests/s even to ``GET /health``; this client spends about a
tenth of that. It speaks just enough HTTP/1.1 (RFC 9112) for JSON APIs: a request with an optional JSON
body, a response framed by Content-Length or chunked transfer coding, keep-alive reuse.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

IDLE_REUSE_SECONDS = 4.0  # the server closes keep-alive connections idle for 5 s: reconnect before that
NO_BODY = (204, 304)


class TransportError(Exception):
    """The exchange failed below HTTP (connect, TLS, reset, timeout); the cause names the kind."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    """Header names in lower case; a repeated header keeps its last value."""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    last_used: float


class ConnectionPool:
    """At most ``size`` connections, each carrying one request at a time; callers beyond that wait in
    arrival order (their wait is part of the latency they measure). Connections open lazily."""

    def __init__(self, url: str, *, cafile: Path, size: int, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 443
        self._tls = ssl.create_default_context(cafile=str(cafile))
        self._timeout = timeout
        self._idle: asyncio.LifoQueue[_Connection | None] = asyncio.LifoQueue()
        for _ in range(size):
            self._idle.put_nowait(None)

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        bearer: str | None = None,
        content: bytes | None = None,
        content_type: str = "application/json",
    ) -> Reply:
        """One exchange: ``body`` is sent as JSON, or ``content`` as it is with ``content_type``; raises
        :class:`TransportError` when it fails below HTTP."""
        connection = await self._idle.get()
        try:
            async with asyncio.timeout(self._timeout):
                if connection is None or time.monotonic() - connection.last_used > IDLE_REUSE_SECONDS:
                    connection = await self._connect(connection)
                framing = None
                if content is not None or body is not None or method in ("POST", "PUT", "PATCH"):
                    payload = content if content is not None else json.dumps(body).encode()
                    framing = (content_type, payload)
                reply, keep = await self._exchange(connection, method, path, framing, bearer)
        except (OSError, EOFError, TimeoutError, ValueError, asyncio.LimitOverrunError) as error:
            _discard(connection)
            self._idle.put_nowait(None)
            raise TransportError(type(error).__name__) from error
        except BaseException:  # cancelled: the connection is in an unknown state
            _discard(connection)
            self._idle.put_nowait(None)
            raise
        connection.last_used = time.monotonic()
        if not keep:
            _discard(connection)
        self._idle.put_nowait(connection if keep else None)
        return reply

    def close(self) -> None:
        while not self._idle.empty():
            _discard(self._idle.get_nowait())

    async def _connect(self, stale: _Connection | None) -> _Connection:
        _discard(stale)
        reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._tls)
        return _Connection(reader, writer, time.monotonic())

    async def _exchange(
        self,
        connection: _Connection,
        method: str,
        path: str,
        framing: tuple[str, bytes] | None,
        bearer: str | None,
    ) -> tuple[Reply, bool]:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        if bearer is not None:
            head.append(f"Authorization: Bearer {bearer}")
        payload = b""
        if framing is not None:
            content_type, payload = framing
            head += [f"Content-Type: {content_type}", f"Content-Length: {len(payload)}"]
        connection.writer.write("\r\n".join(head).encode() + b"\r\n\r\n" + payload)
        reader = connection.reader
        status = int((await reader.readuntil(b"\r\n")).split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if status in NO_BODY or method == "HEAD":
            data = b""
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            data = await _read_chunked(reader)
        else:
            data = await reader.readexactly(int(headers.get(b"content-length", b"0")))
        keep = headers.get(b"connection", b"").lower() != b"close"
        return Reply(status, data, {k.decode(): v.decode() for k, v in headers.items()}), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """RFC 9112 §7.1: hex size lines, each chunk followed by CRLF; a zero chunk and trailers end it."""
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass
    return b"".join(chunks)


def _discard(connection: _Connection | None) -> None:
    if connection is not None:
        connection.writer.close()
