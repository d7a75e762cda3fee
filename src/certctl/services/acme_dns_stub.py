"""The address lookups behind http-01 and tls-alpn-01 validation, asked of the configured DNS server.

A general resolver spent about a third of a millisecond of CPU per A query (message objects, a
resolution state machine, answer sets), which was a tenth of the server's work per http-01 order. The
common answer needs none of that: a NOERROR response whose answer section holds only A (or AAAA)
records of the name asked, or an empty answer, or NXDOMAIN. This module sends one query (RFC 1035 §4)
from a fresh UDP socket, connected to the server so that only its datagrams are read, with a random
source port and a random query id, and reads such answers itself. Anything else (a truncated answer, a
CNAME, another record type, another response code, a malformed message) is :data:`UNSURE`, and the
caller asks its full resolver instead, so the outcome of a validation never depends on which path
answered.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
import struct
import time
from typing import Final

A: Final = 1
AAAA: Final = 28
CLASS_IN: Final = 1
MAX_MESSAGE: Final = 4096
RETRY_SECONDS: Final = 2.0
HEADER = struct.Struct(">HHHHHH")
RECORD = struct.Struct(">HHIH")
QUERY_FLAGS: Final = 0x0100  # RD: ask the server to recurse
NOERROR: Final = 0
NXDOMAIN: Final = 3


class Unsure(Exception):
    """The answer is not one this module reads; ask the full resolver."""


UNSURE: Final = None


def encode_name(name: str) -> bytes:
    """The wire form of an ASCII host name (RFC 1035 §3.1); :class:`Unsure` for anything else."""
    try:
        encoded = name.rstrip(".").encode("ascii")
    except UnicodeEncodeError:
        raise Unsure("not an ASCII name") from None
    parts = []
    for label in encoded.split(b"."):
        if not 0 < len(label) < 64:
            raise Unsure("empty or long label")
        parts.append(_LENGTHS[len(label)])
        parts.append(label)
    parts.append(b"\0")
    wire = b"".join(parts)
    if len(wire) > 255:
        raise Unsure("name too long")
    return wire


_LENGTHS = [bytes([n]) for n in range(64)]


def query(query_id: int, name: str, rdtype: int) -> bytes:
    return _packet(query_id, encode_name(name), rdtype)


def _packet(query_id: int, wire: bytes, rdtype: int) -> bytes:
    """A query for the name in its wire form ``wire``."""
    return HEADER.pack(query_id, QUERY_FLAGS, 1, 0, 0, 0) + wire + struct.pack(">HH", rdtype, CLASS_IN)


def _name_at(message: bytes, offset: int) -> tuple[bytes, int]:
    """The (lower-cased) wire name at ``offset``, following compression pointers, and the offset after
    it in the record."""
    parts: list[bytes] = []  # runs of labels, each with its length octet
    start = offset
    after = -1
    jumps = 0
    size = len(message)
    while True:
        if offset >= size:
            raise Unsure("name runs past the message")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= size or jumps > 16:
                raise Unsure("bad compression pointer")
            parts.append(message[start:offset])
            if after < 0:
                after = offset + 2
            offset = start = ((length & 0x3F) << 8) | message[offset + 1]
            jumps += 1
            continue
        if length & 0xC0:
            raise Unsure("unknown label type")
        if length == 0:
            parts.append(message[start : offset + 1])
            return b"".join(parts).lower(), (after if after >= 0 else offset + 1)
        if offset + 1 + length > size:
            raise Unsure("name runs past the message")
        offset += 1 + length


def read_answer(
    message: bytes, query_id: int, name: str, rdtype: int, *, asked: bytes | None = None
) -> list[str] | None:
    """The addresses a response holds for ``name``: ``[]`` for NXDOMAIN or no record of the type;
    None when ``message`` is not the response to this query (another id or question: keep waiting).
    :class:`Unsure` when it is, but not one this module reads. ``asked``: the name's wire form in lower
    case, when the caller has it already."""
    if len(message) < HEADER.size:
        return None
    answer_id, flags, questions, answers, _, _ = HEADER.unpack_from(message)
    if asked is None:
        asked = encode_name(name).lower()
    if answer_id != query_id or not flags & 0x8000 or questions != 1:
        return None
    qname, offset = _name_at(message, HEADER.size)
    if qname != asked or message[offset : offset + 4] != struct.pack(">HH", rdtype, CLASS_IN):
        return None
    offset += 4
    if flags & 0x0200:
        raise Unsure("truncated")
    if (flags >> 11) & 0xF:
        raise Unsure("not a standard query response")
    code = flags & 0xF
    if code == NXDOMAIN:
        return []
    if code != NOERROR:
        raise Unsure(f"response code {code}")
    found: list[str] = []
    for _ in range(answers):
        owner, offset = _name_at(message, offset)
        if offset + RECORD.size > len(message):
            raise Unsure("record runs past the message")
        kind, klass, _ttl, length = RECORD.unpack_from(message, offset)
        offset += RECORD.size
        data = message[offset : offset + length]
        offset += length
        if len(data) != length:
            raise Unsure("record data runs past the message")
        if owner != asked or klass != CLASS_IN or kind != rdtype:
            raise Unsure("a record other than the name's addresses")
        if kind == A and length == 4:
            found.append(socket.inet_ntop(socket.AF_INET, data))
        elif kind == AAAA and length == 16:
            found.append(str(ipaddress.IPv6Address(data)))
        else:
            raise Unsure("address of the wrong length")
    return found


async def lookup(server: tuple[str, int], name: str, rdtype: int, *, wait_seconds: float) -> list[str] | None:
    """The ``rdtype`` (A or AAAA) addresses of ``name`` from ``server``, ``[]`` when there are none,
    :data:`UNSURE` (None) when the full resolver must answer (see the module text). ``TimeoutError``
    when the server does not answer within ``wait_seconds`` (the query is sent again every
    :data:`RETRY_SECONDS`); ``OSError`` when it cannot be reached.

    The socket is watched with the event loop's reader callback for as long as the lookup runs, and the
    waits are a future and a timer of our own: the loop's ``sock_recv`` and a timeout context per wait
    cost about as much CPU again as the rest of the lookup."""
    loop = asyncio.get_running_loop()
    host, port = server
    query_id = secrets.randbelow(0x10000)
    try:
        wire = encode_name(name)
    except Unsure:
        return UNSURE
    packet = _packet(query_id, wire, rdtype)
    asked = wire.lower()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + wait_seconds
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))  # a random source port; datagrams from elsewhere are not read
        fileno = sock.fileno()
        wake = _Wake(loop)
        loop.add_reader(fileno, wake.readable)
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.send(packet)
                resend_at = time.monotonic() + min(remaining, RETRY_SECONDS)
                while True:
                    try:
                        message = sock.recv(MAX_MESSAGE)
                    except BlockingIOError:
                        if not await wake.wait(resend_at - time.monotonic()):
                            break  # nothing in time: send the query again
                        continue
                    try:
                        found = read_answer(message, query_id, name, rdtype, asked=asked)
                    except Unsure:
                        return UNSURE
                    if found is not None:
                        return found
        finally:
            loop.remove_reader(fileno)


class _Wake:
    """A socket's readiness as an awaitable: ``wait`` returns True when it became readable, False when
    ``seconds`` passed first."""

    __slots__ = ("_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiter: asyncio.Future[bool] | None = None

    def readable(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def wait(self, seconds: float) -> bool:
        if seconds <= 0:
            return False
        waiter: asyncio.Future[bool] = self._loop.create_future()
        self._waiter = waiter
        timer = self._loop.call_later(seconds, _settle, waiter, False)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _settle(waiter: asyncio.Future[bool], value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)
