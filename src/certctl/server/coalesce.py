"""One write per response: the HTTP protocol the listeners run, with its writes of one event-loop turn
joined.

The server writes a response's status line and headers, then its body, as two writes; on a TLS
connection each becomes a TLS record and a ``send`` of its own, and the client wakes up for each. A
response of the ACME or OCSP paths is a few hundred bytes, so the second write costs as much as the
first. Writes are held and written together when the response is complete (or, for a body streamed over
several turns of the event loop, at the end of each turn, ``call_soon``): the response leaves as one
record and one ``send``, in the order written, with no wait behind the other work of the turn.
Closing, ``write_eof`` and a protocol switch write what is held first; ``abort`` drops it, as the
transport does with its own buffer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A transport whose writes of one event-loop turn go out as one write."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._pending is None:
            self._pending = [bytes(data)]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        held = sum(map(len, self._pending)) if self._pending else 0
        return held + self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`CoalescingTransport`, written out as each response
    completes."""

    def on_response_complete(self) -> None:
        if isinstance(self.transport, CoalescingTransport):
            self.transport.flush()
        super().on_response_complete()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not an asyncio.Transport subclass, but has its methods
        held = CoalescingTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(held)  # type: ignore[arg-type]
