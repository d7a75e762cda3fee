"""The http-01 fetch against a loopback server that answers in each way a web server may: with a
Content-Length, chunked, delimited by closing, in pieces, without closing, too large, not HTTP at all,
never, or not listening."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from certctl.services.acme_http01 import FetchError, fetch

Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(answer: Answer, call: Callable[[int], Awaitable[tuple[int, bytes]]]) -> tuple[int, bytes]:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        try:
            await answer(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await call(port)
    finally:
        server.close()
    assert requests and requests[0].startswith(b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\n")
    assert b"\r\nHost: www.example.test\r\n" in requests[0]
    return result


def _run(answer: Answer, *, max_body: int = 8192, wait: float = 5.0) -> tuple[int, bytes]:
    async def call(port: int) -> tuple[int, bytes]:
        return await fetch(
            "127.0.0.1",
            port,
            host="www.example.test",
            path="/.well-known/acme-challenge/tok",
            wait_seconds=wait,
            max_body=max_body,
        )

    return asyncio.run(_serve(answer, call))


def _fixed(raw: bytes) -> Answer:
    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()

    return answer


def test_content_length_chunked_and_close_delimited_bodies() -> None:
    assert _run(_fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")) == (200, b"hello")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;x=y\r\nlo\r\n0\r\n\r\n"
    assert _run(_fixed(chunked)) == (200, b"hello")
    assert _run(_fixed(b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\nmissing")) == (404, b"missing")


def test_bodies_are_cut_at_the_limit() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 100000
    assert _run(_fixed(big), max_body=10) == (200, b"a" * 10)
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"ffff\r\n"
        + b"b" * 65535
        + b"\r\n0\r\n\r\n"
    )
    assert _run(_fixed(chunked), max_body=10) == (200, b"b" * 10)


def test_answers_in_pieces_and_answers_that_stay_open() -> None:
    pieces = [
        b"HTTP/1.1 200 OK\r\nTransfer-",
        b"Encoding: chunked\r\n\r\n3\r",
        b"\nhel\r\n2\r\nlo",
        b"\r\n0\r\n\r\n",
    ]

    async def trickle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)

    assert _run(trickle) == (200, b"hello")

    async def stays_open(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        await asyncio.sleep(5)  # the answer is complete: the fetch does not wait for the close

    assert _run(stays_open, wait=2.0) == (200, b"hello")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not HTTP"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "not HTTP"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "hexadecimal"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "ended before its Content-Length"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 20000 + b"\r\n\r\n", "header block exceeds 16384 bytes"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "ended inside a chunk"),
        (b"HTTP/1.1 200 OK\r\nContent-Le", "ended before its header block"),
    ],
)
def test_answers_that_are_not_usable_http_are_fetch_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(FetchError, match=reason):
        _run(_fixed(raw))


def test_a_server_that_never_answers_times_out() -> None:
    async def silent(_reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    with pytest.raises(FetchError, match="timed out"):
        _run(silent, wait=0.3)


def test_nothing_listening_is_a_fetch_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def call() -> tuple[int, bytes]:
        return await fetch("127.0.0.1", port, host="x", path="/", wait_seconds=2, max_body=10)

    with pytest.raises(FetchError, match="ConnectionRefusedError"):
        asyncio.run(call())
