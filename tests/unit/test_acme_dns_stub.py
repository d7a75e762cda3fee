"""The direct address lookup of http-01 / tls-alpn-01 validation: the answers it reads itself, the ones it
leaves to the full resolver, and the wire exchange (ids, retransmission, timeout) against a UDP server."""

from __future__ import annotations

import asyncio
import socket
from typing import cast

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest

from certctl.services import acme_dns_stub as stub


def _response(
    name: str,
    rdtype: str,
    *,
    records: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
    query_id: int = 4242,
    truncated: bool = False,
) -> bytes:
    asked = dns.message.make_query(name, rdtype)
    asked.id = query_id
    answer = dns.message.make_response(asked)
    answer.set_rcode(rcode)
    for owner, kind, value in records:
        answer.answer.append(dns.rrset.from_text(owner.rstrip(".") + ".", 300, "IN", kind, value))
    if truncated:
        answer.flags |= dns.flags.TC
    return answer.to_wire()


def test_reads_the_addresses_of_the_name() -> None:
    wire = _response("Host.Example.com", "A", records=[("host.example.com", "A", "192.0.2.7")])
    assert stub.read_answer(wire, 4242, "host.example.com", stub.A) == ["192.0.2.7"]
    wire = _response("h.example.com", "AAAA", records=[("h.example.com", "AAAA", "2001:db8::1")])
    assert stub.read_answer(wire, 4242, "h.example.com", stub.AAAA) == ["2001:db8::1"]


def test_no_address_is_an_empty_list() -> None:
    assert stub.read_answer(_response("h.example.com", "A"), 4242, "h.example.com", stub.A) == []
    nx = _response("h.example.com", "A", rcode=dns.rcode.NXDOMAIN)
    assert stub.read_answer(nx, 4242, "h.example.com", stub.A) == []


@pytest.mark.parametrize(
    "wire",
    [
        _response(
            "h.example.com",
            "A",
            records=[("h.example.com", "CNAME", "t.example.net."), ("t.example.net", "A", "192.0.2.1")],
        ),
        _response("h.example.com", "A", records=[("h.example.com", "A", "192.0.2.1")], truncated=True),
        _response("h.example.com", "A", rcode=dns.rcode.SERVFAIL),
        _response("h.example.com", "A", records=[("other.example.com", "A", "192.0.2.1")]),
    ],
    ids=["cname", "truncated", "servfail", "other-owner"],
)
def test_other_answers_go_to_the_full_resolver(wire: bytes) -> None:
    with pytest.raises(stub.Unsure):
        stub.read_answer(wire, 4242, "h.example.com", stub.A)


def test_a_datagram_that_answers_another_query_is_ignored() -> None:
    wire = _response("h.example.com", "A", records=[("h.example.com", "A", "192.0.2.7")])
    assert stub.read_answer(wire, 4243, "h.example.com", stub.A) is None
    assert stub.read_answer(wire, 4242, "other.example.com", stub.A) is None
    assert stub.read_answer(wire, 4242, "h.example.com", stub.AAAA) is None
    assert stub.read_answer(stub.query(4242, "h.example.com", stub.A), 4242, "h.example.com", stub.A) is None
    assert stub.read_answer(b"\x10\x92", 4242, "h.example.com", stub.A) is None


def test_malformed_answers_are_not_read() -> None:
    wire = _response("h.example.com", "A", records=[("h.example.com", "A", "192.0.2.7")])
    with pytest.raises(stub.Unsure):
        stub.read_answer(wire[:-2], 4242, "h.example.com", stub.A)
    looped = bytearray(wire)
    looped[12:14] = b"\xc0\x0c"  # the question name points at itself
    with pytest.raises(stub.Unsure):
        stub.read_answer(bytes(looped), 4242, "h.example.com", stub.A)


@pytest.mark.parametrize(
    "name", ["bücher.example", "a" * 64 + ".example", ".".join(["abcdefgh"] * 30), "a..b"]
)
def test_names_it_cannot_ask_go_to_the_full_resolver(name: str) -> None:
    with pytest.raises(stub.Unsure):
        stub.encode_name(name)


class _Server(asyncio.DatagramProtocol):
    """A UDP DNS server on loopback: answers A queries with 192.0.2.9 after ``drop`` ignored queries,
    each answer preceded by a datagram with the wrong id."""

    def __init__(self, drop: int, *, alias: bool = False) -> None:
        self.drop, self.alias = drop, alias
        self.seen = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen += 1
        if self.seen <= self.drop:
            return
        asked = dns.message.from_wire(data)
        answer = dns.message.make_response(asked)
        owner = asked.question[0].name
        if self.alias:
            answer.answer.append(dns.rrset.from_text(owner, 60, "IN", "CNAME", "target.example.net."))
            owner = dns.name.from_text("target.example.net.")
        answer.answer.append(dns.rrset.from_text(owner, 60, "IN", "A", "192.0.2.9"))
        wrong = dns.message.make_response(asked)
        wrong.id = (asked.id + 1) % 0x10000
        assert self.transport is not None
        self.transport.sendto(wrong.to_wire(), addr)
        self.transport.sendto(answer.to_wire(), addr)


async def _serve(drop: int, *, alias: bool = False) -> tuple[asyncio.DatagramTransport, _Server, int]:
    loop = asyncio.get_running_loop()
    server = _Server(drop, alias=alias)
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    return transport, server, transport.get_extra_info("sockname")[1]


def test_lookup_over_udp_skips_other_ids_and_retransmits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stub, "RETRY_SECONDS", 0.2)

    async def scenario() -> tuple[list[str] | None, int]:
        transport, server, port = await _serve(drop=1)
        try:
            found = await stub.lookup(("127.0.0.1", port), "h.example.com", stub.A, wait_seconds=5)
        finally:
            transport.close()
        return found, server.seen

    assert asyncio.run(scenario()) == (["192.0.2.9"], 2)


def test_lookup_times_out_when_nothing_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stub, "RETRY_SECONDS", 0.1)

    async def scenario() -> int:
        transport, server, port = await _serve(drop=100)
        try:
            with pytest.raises(TimeoutError):
                await stub.lookup(("127.0.0.1", port), "h.example.com", stub.A, wait_seconds=0.35)
        finally:
            transport.close()
        return server.seen

    assert asyncio.run(scenario()) >= 3


def test_lookup_to_a_closed_port_fails_below_dns() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        asyncio.run(stub.lookup(("127.0.0.1", port), "h.example.com", stub.A, wait_seconds=2))


def test_lookup_leaves_an_alias_to_the_full_resolver() -> None:
    async def scenario() -> list[str] | None:
        transport, _, port = await _serve(drop=0, alias=True)
        try:
            return await stub.lookup(("127.0.0.1", port), "h.example.com", stub.A, wait_seconds=5)
        finally:
            transport.close()

    assert asyncio.run(scenario()) is stub.UNSURE
