"""Command steps (real programs) and the TLS check (in-test TLS, SMTP and IMAP servers on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from certctl.agent.deploy.base import Material, Step, StepFailed
from certctl.agent.deploy.commands import command_step
from certctl.agent.deploy.verify import served_fingerprint, tls_verify_step
from certctl.agent.targets.common import TlsVerify
from support.material import TestCa

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def run_step(step: Step) -> None:
    async def once() -> None:
        await step()

    asyncio.run(once())


def failure_of(step: Step) -> str:
    with pytest.raises(StepFailed) as caught:
        run_step(step)
    return str(caught.value)


def test_command_that_exits_zero_passes() -> None:
    run_step(command_step(["true"]))


def test_command_failure_names_program_status_and_last_line() -> None:
    step = command_step(["sh", "-c", "echo first; echo 'the reason' >&2; exit 3"])
    assert failure_of(step) == "sh exited 3: the reason"
    assert failure_of(command_step(["false"])) == "false exited 1: (no output)"


def test_command_over_its_time_is_killed() -> None:
    step = command_step(["sleep", "30"], timeout=0.3)
    assert failure_of(step) == "sleep exited -9: timed out after 0.3 s and was killed"


def test_missing_program_is_reported() -> None:
    assert failure_of(command_step(["/nonexistent/certctl-reload"])) == (
        "/nonexistent/certctl-reload: program not found"
    )


def test_environment_is_added_to_the_agents_own() -> None:
    argv = ["sh", "-c", 'test "$CERTCTL_MARK" = yes && test -n "$PATH"']
    run_step(command_step(argv, env={"CERTCTL_MARK": "yes"}))


def test_command_that_leaves_a_daemon_holding_its_output_still_completes(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    step = command_step(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; echo started"], timeout=20)
    try:
        run_step(step)
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


@pytest.fixture(scope="module")
def material_and_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Material, ssl.SSLContext]:
    directory = tmp_path_factory.mktemp("tls")
    material = TestCa(directory).material("127.0.0.1", "mail.example.test")
    (directory / "cert.pem").write_text(material.fullchain_pem)
    (directory / "key.pem").write_text(material.private_key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return material, context


async def _with_server(
    handler: Handler, ssl_context: ssl.SSLContext | None, body: Callable[[int], Awaitable[None]]
) -> None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    try:
        await body(port)
    finally:
        server.close()
        await server.wait_closed()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


def test_plain_tls_fingerprint_and_sni(material_and_files: tuple[Material, ssl.SSLContext]) -> None:
    material, context = material_and_files
    names: list[str | None] = []
    context.sni_callback = lambda _sock, name, _ctx: names.append(name)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        await _close(writer)

    async def body(port: int) -> None:
        served = await served_fingerprint(host="127.0.0.1", port=port, server_name="mail.example.test")
        assert served == material.fingerprint_sha256
        verify = TlsVerify(port=port, attempts=1)
        await tls_verify_step(verify, material.fingerprint_sha256.upper())()
        with pytest.raises(StepFailed) as caught:
            await tls_verify_step(TlsVerify(port=port, attempts=2, delay_seconds=0), "ab" * 32)()
        served = material.fingerprint_sha256[:16]
        assert (
            str(caught.value) == f"endpoint 127.0.0.1:{port} serves {served}..., expected abababababababab..."
        )

    try:
        asyncio.run(_with_server(handler, context, body))
    finally:
        context.sni_callback = None
    assert names[0] == "mail.example.test"


def test_unreachable_endpoint_is_reported(material_and_files: tuple[Material, ssl.SSLContext]) -> None:
    async def nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _close(writer)

    ports: list[int] = []

    async def grab(port: int) -> None:
        ports.append(port)

    asyncio.run(_with_server(nothing, None, grab))  # a port that was free a moment ago and is closed now
    step = tls_verify_step(TlsVerify(port=ports[0], attempts=1), material_and_files[0].fingerprint_sha256)
    assert failure_of(step).startswith(f"endpoint 127.0.0.1:{ports[0]} unreachable over TLS: ")


def _smtp_handler(context: ssl.SSLContext) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.example.test ESMTP\r\n")
        assert (await reader.readline()).startswith(b"EHLO ")
        writer.write(b"250-mail.example.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
        assert await reader.readline() == b"STARTTLS\r\n"
        writer.write(b"220 2.0.0 Ready to start TLS\r\n")
        await writer.drain()
        await writer.start_tls(context)
        await reader.read(1)
        await _close(writer)

    return handler


def _imap_handler(context: ssl.SSLContext) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
        assert await reader.readline() == b"a STARTTLS\r\n"
        writer.write(b"a OK Begin TLS negotiation now\r\n")
        await writer.drain()
        await writer.start_tls(context)
        await reader.read(1)
        await _close(writer)

    return handler


@pytest.mark.parametrize("protocol", ["smtp", "imap"])
def test_starttls_dialogues(material_and_files: tuple[Material, ssl.SSLContext], protocol: str) -> None:
    material, context = material_and_files
    handler = _smtp_handler(context) if protocol == "smtp" else _imap_handler(context)

    async def body(port: int) -> None:
        verify = TlsVerify(port=port, starttls=protocol, attempts=1)
        await tls_verify_step(verify, material.fingerprint_sha256)()

    asyncio.run(_with_server(handler, None, body))


def test_starttls_refusal_is_reported(material_and_files: tuple[Material, ssl.SSLContext]) -> None:
    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mail.example.test ESMTP\r\n")
        await reader.readline()
        writer.write(b"250 mail.example.test\r\n")
        await reader.readline()
        writer.write(b"454 4.7.0 TLS not available\r\n")
        await writer.drain()
        await _close(writer)

    async def body(port: int) -> None:
        step = tls_verify_step(
            TlsVerify(port=port, starttls="smtp", attempts=1), material_and_files[0].fingerprint_sha256
        )
        with pytest.raises(StepFailed) as caught:
            await step()
        refusal = "SMTP STARTTLS refused: 454 4.7.0 TLS not available"
        assert str(caught.value) == f"endpoint 127.0.0.1:{port} unreachable over TLS: {refusal}"

    asyncio.run(_with_server(refusing, None, body))
