"""The fetch behind http-01 validation (RFC 8555 §8.3): one plain HTTP/1.1 GET to one address.

Written on asyncio streams rather than a general HTTP client: the validation needs one request with a
given Host header, no redirects, no proxy, no TLS, no connection reuse and a small body, and a general
client cost more CPU per validation than the rest of the check together. The response is read with
bounded sizes: the header block, the body (``Content-Length``, chunked, or until the server closes)
and each chunk.
"""

from __future__ import annotations

import asyncio

MAX_HEADER_BYTES = 16 * 1024


class FetchError(Exception):
    """The server could not be reached or did not answer HTTP; the message says what went wrong."""


async def fetch(
    address: str, port: int, *, host: str, path: str, wait_seconds: float, max_body: int
) -> tuple[int, bytes]:
    """GET ``path`` from ``address:port`` with ``Host: host``; the status and at most ``max_body`` bytes
    of the body."""
    try:
        async with asyncio.timeout(wait_seconds):
            reader, writer = await asyncio.open_connection(address, port, limit=MAX_HEADER_BYTES)
            try:
                request = (
                    f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: certctl-acme-validation\r\n"
                    "Accept: */*\r\nConnection: close\r\n\r\n"
                )
                writer.write(request.encode("ascii"))
                await writer.drain()
                return await _response(reader, max_body)
            finally:
                writer.close()
    except TimeoutError:
        raise FetchError("timed out") from None
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, UnicodeError) as exc:
        raise FetchError(type(exc).__name__) from None


async def _response(reader: asyncio.StreamReader, max_body: int) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise FetchError("the answer is not HTTP/1.x")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return int(code), await _chunked(reader, max_body)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise FetchError("the Content-Length is not a number")
        wanted = min(int(length), max_body)
        return int(code), await reader.readexactly(wanted)
    return int(code), await reader.read(max_body)


async def _chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while len(body) < max_body:
        size_line = await reader.readuntil(b"\r\n")
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise FetchError("a chunk size is not hexadecimal") from None
        if size == 0:
            break
        body += await reader.readexactly(min(size, max_body - len(body) + 1))
        if len(body) >= max_body:
            break
        await reader.readexactly(2)  # the CRLF after the chunk
    return bytes(body[:max_body])
