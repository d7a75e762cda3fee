"""Confirm over TLS that an endpoint serves the certificate just deployed.

The check compares the SHA-256 of the leaf certificate's DER, as served, with the fingerprint of the
material: it does not validate the chain or the name, because the question is "did the server pick up
the new file", not "is the certificate trusted" (a private CA or a not-yet-valid certificate must still
verify). Mail servers are reached through STARTTLS: SMTP per RFC 3207 (EHLO, then STARTTLS) and IMAP per
RFC 3501 §6.2.1 (``a STARTTLS``). Servers pick up new files a moment after a reload, so the check retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl
from dataclasses import dataclass
from typing import Literal

from certctl.agent.deploy.base import Step, StepFailed
from certctl.agent.targets.common import TlsVerify

_LINE_LIMIT = 4096


def _client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we compare fingerprints, see the module docstring
    return context


def normalize_fingerprint(value: str) -> str:
    """Lower-case hex without separators, so ``AB:CD`` and ``abcd`` compare equal."""
    return value.replace(":", "").strip().lower()


async def served_fingerprint(
    *,
    host: str,
    port: int,
    server_name: str | None = None,
    starttls: Literal["smtp", "imap"] | None = None,
    timeout_seconds: float = 5.0,
) -> str:
    """Connect once and return the lower-case hex SHA-256 of the leaf certificate the endpoint serves.

    Raises OSError, ssl.SSLError, TimeoutError or StepFailed (a STARTTLS dialogue the server refused).
    """
    return await asyncio.wait_for(_fetch(host, port, server_name, starttls), timeout_seconds)


async def _fetch(host: str, port: int, server_name: str | None, starttls: str | None) -> str:
    context = _client_context()
    sni = server_name or host
    if starttls is None:
        reader, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=sni)
    else:
        reader, writer = await asyncio.open_connection(host, port)
    try:
        if starttls == "smtp":
            await _smtp_starttls(reader, writer)
        elif starttls == "imap":
            await _imap_starttls(reader, writer)
        if starttls is not None:
            await writer.start_tls(context, server_hostname=sni)
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            raise StepFailed(f"endpoint {host}:{port} sent no certificate")
        return hashlib.sha256(der).hexdigest()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)


async def _read_line(reader: asyncio.StreamReader) -> str:
    line = await reader.readline()
    if not line:
        raise StepFailed("the server closed the connection during STARTTLS")
    return line[:_LINE_LIMIT].decode("ascii", "replace").rstrip("\r\n")


async def _smtp_reply(reader: asyncio.StreamReader) -> str:
    """One SMTP reply (RFC 5321 §4.2: ``250-`` lines continue, ``250 `` ends); returns its last line."""
    while True:
        line = await _read_line(reader)
        if len(line) < 4 or line[3] != "-":
            return line


async def _smtp_starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    greeting = await _smtp_reply(reader)
    if not greeting.startswith("220"):
        raise StepFailed(f"SMTP greeting refused: {greeting}")
    writer.write(b"EHLO localhost\r\n")
    ehlo = await _smtp_reply(reader)
    if not ehlo.startswith("250"):
        raise StepFailed(f"SMTP EHLO refused: {ehlo}")
    writer.write(b"STARTTLS\r\n")
    answer = await _smtp_reply(reader)
    if not answer.startswith("220"):
        raise StepFailed(f"SMTP STARTTLS refused: {answer}")


async def _imap_starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    greeting = await _read_line(reader)
    if not greeting.startswith("* OK"):
        raise StepFailed(f"IMAP greeting refused: {greeting}")
    writer.write(b"a STARTTLS\r\n")
    while True:
        line = await _read_line(reader)
        if line.startswith("a "):
            break
    if not line.upper().startswith("A OK"):
        raise StepFailed(f"IMAP STARTTLS refused: {line}")


def _short(fingerprint: str) -> str:
    return fingerprint[:16] + "..."


@dataclass(frozen=True)
class TlsVerifyStep:
    """A :data:`Step` that passes once the endpoint serves ``expected_fingerprint``."""

    verify: TlsVerify
    expected_fingerprint: str

    @property
    def description(self) -> str:
        return f"TLS check of {self.verify.host}:{self.verify.port}"

    async def __call__(self) -> None:
        expected = normalize_fingerprint(self.expected_fingerprint)
        endpoint = f"{self.verify.host}:{self.verify.port}"
        last_served: str | None = None
        last_error: str | None = None
        for attempt in range(self.verify.attempts):
            if attempt:
                await asyncio.sleep(self.verify.delay_seconds)
            try:
                served = await served_fingerprint(
                    host=self.verify.host,
                    port=self.verify.port,
                    server_name=self.verify.server_name,
                    starttls=self.verify.starttls,
                    timeout_seconds=self.verify.timeout_seconds,
                )
            except (OSError, ssl.SSLError, TimeoutError, StepFailed) as exc:
                last_error = str(exc) or type(exc).__name__
                continue
            if served == expected:
                return
            last_served = served
        if last_served is not None:
            raise StepFailed(f"endpoint {endpoint} serves {_short(last_served)}, expected {_short(expected)}")
        raise StepFailed(f"endpoint {endpoint} unreachable over TLS: {last_error}")


def tls_verify_step(verify: TlsVerify, expected_fingerprint: str) -> Step:
    """A step checking, with ``verify.attempts`` tries, that the endpoint serves the expected leaf."""
    return TlsVerifyStep(verify=verify, expected_fingerprint=expected_fingerprint)
