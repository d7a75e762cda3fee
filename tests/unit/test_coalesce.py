"""``server.coalesce``: writes made in one turn of the event loop leave as one write, in order; closing,
``write_eof`` and a protocol switch write what is held first, ``abort`` drops it; the listeners answer
HTTP through it."""

from __future__ import annotations

import asyncio
from typing import Any

from certctl.server.coalesce import CoalescingTransport


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def write_eof(self) -> None:
        self.calls.append(("eof", None))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", None))

    def set_protocol(self, protocol: Any) -> None:
        self.calls.append(("protocol", protocol))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def test_writes_of_one_turn_leave_as_one() -> None:
    async def scenario() -> list[tuple[str, Any]]:
        raw = Recorder()
        held = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(b"HTTP/1.1 200 OK\r\n\r\n")
        held.write(b"")
        held.writelines([memoryview(b"bo"), bytearray(b"dy")])
        assert raw.calls == []
        assert held.get_write_buffer_size() == 19 + 4 + 7
        assert held.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's
        await asyncio.sleep(0)
        held.write(b"next")
        await asyncio.sleep(0)
        return raw.calls

    assert asyncio.run(scenario()) == [("write", b"HTTP/1.1 200 OK\r\n\r\nbody"), ("write", b"next")]


def test_close_eof_and_protocol_switch_write_first_abort_drops() -> None:
    async def scenario() -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        loop = asyncio.get_running_loop()
        results = []
        for action in ("close", "write_eof", "set_protocol", "abort"):
            raw = Recorder()
            held = CoalescingTransport(raw, loop)  # type: ignore[arg-type]
            held.write(b"held")
            if action == "set_protocol":
                held.set_protocol("ws")  # type: ignore[arg-type]
            else:
                getattr(held, action)()
            await asyncio.sleep(0)  # the scheduled flush finds nothing left to write
            results.append(raw.calls)
        return results[0], results[1], results[2], results[3]

    closed, eof, switched, aborted = asyncio.run(scenario())
    assert closed == [("write", b"held"), ("close", None)]
    assert eof == [("write", b"held"), ("eof", None)]
    assert switched == [("write", b"held"), ("protocol", "ws")]
    assert aborted == [("abort", None)]


def test_nothing_is_written_to_a_closing_transport() -> None:
    async def scenario() -> list[tuple[str, Any]]:
        raw = Recorder()
        held = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(b"late")
        raw.closing = True  # the peer went away in the meantime
        await asyncio.sleep(0)
        return raw.calls

    assert asyncio.run(scenario()) == []
