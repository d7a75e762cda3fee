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
    labels = name.rstrip(".").split(".")
    try:
        encoded = [label.encode("ascii") for label in labels]
    except UnicodeEncodeError:
        raise Unsure("not an ASCII name") from None
    if any(not 0 < len(label) < 64 for label in encoded):
        raise Unsure("empty or long label")
    wire = b"".join(bytes([len(label)]) + label for label in encoded) + b"\0"
    if len(wire) > 255:
        raise Unsure("name too long")
    return wire


def query(query_id: int, name: str, rdtype: int) -> bytes:
    return HEADER.pack(query_id, QUERY_FLAGS, 1, 0, 0, 0) + encode_name(name) + struct.pack(">HH", rdtype, 1)


def _name_at(message: bytes, offset: int) -> tuple[bytes, int]:
    """The (lower-cased) wire name at ``offset``, following compression pointers, and the offset after
    it in the record."""
    labels: list[bytes] = []
    after = -1
    jumps = 0
    while True:
        if offset >= len(message):
            raise Unsure("name runs past the message")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(message) or jumps > 16:
                raise Unsure("bad compression pointer")
            if after < 0:
                after = offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            jumps += 1
            continue
        if length & 0xC0:
            raise Unsure("unknown label type")
        if length == 0:
            wire = b"".join(bytes([len(label)]) + label for label in labels) + b"\0"
            return wire.lower(), (after if after >= 0 else offset + 1)
        labels.append(message[offset + 1 : offset + 1 + length])
        offset += 1 + length


def read_answer(message: bytes, query_id: int, name: str, rdtype: int) -> list[str] | None:
    """The addresses a response holds for ``name``: ``[]`` for NXDOMAIN or no record of the type;
    None when ``message`` is not the response to this query (another id or question: keep waiting).
    :class:`Unsure` when it is, but not one this module reads."""
    if len(message) < HEADER.size:
        return None
    answer_id, flags, questions, answers, _, _ = HEADER.unpack_from(message)
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
            found.append(str(ipaddress.IPv4Address(data)))
        elif kind == AAAA and length == 16:
            found.append(str(ipaddress.IPv6Address(data)))
        else:
            raise Unsure("address of the wrong length")
    return found


async def lookup(server: tuple[str, int], name: str, rdtype: int, *, wait_seconds: float) -> list[str] | None:
    """The ``rdtype`` (A or AAAA) addresses of ``name`` from ``server``, ``[]`` when there are none,
    :data:`UNSURE` (None) when the full resolver must answer (see the module text). ``TimeoutError``
    when the server does not answer within ``wait_seconds`` (the query is sent again every
    :data:`RETRY_SECONDS`); ``OSError`` when it cannot be reached."""
    loop = asyncio.get_running_loop()
    host, port = server
    query_id = secrets.randbelow(0x10000)
    try:
        packet = query(query_id, name, rdtype)
    except Unsure:
        return UNSURE
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + wait_seconds
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))  # a random source port; datagrams from elsewhere are not read
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.send(packet)
            try:
                async with asyncio.timeout(min(remaining, RETRY_SECONDS)):
                    while True:
                        message = await loop.sock_recv(sock, MAX_MESSAGE)
                        try:
                            found = read_answer(message, query_id, name, rdtype)
                        except Unsure:
                            return UNSURE
                        if found is not None:
                            return found
            except TimeoutError:
                continue
