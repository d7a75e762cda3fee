"""HAProxy: one PEM holding leaf, chain and key, picked up by a reload or swapped through the runtime API.

``mode="reload"`` writes the PEM, runs the config test (``haproxy -c -f <cfg>``) and the reload command
(``systemctl reload haproxy`` by default; the packaged unit runs HAProxy in master-worker mode, where a
reload makes the master start new workers on the new files while old ones finish). The test suite runs
HAProxy itself as ``haproxy -W -db -S <master socket> -f <cfg>`` and reloads with ``kill -USR2 <master
pid>``, which is what the unit's reload does, without systemd.

Such a reload is a signal: the command returns before HAProxy has reloaded, and a second SIGUSR2 that
arrives while the master is still re-executing is lost. A deployment whose check fails quickly would
then reload for the rollback too soon, and HAProxy would keep serving the new certificate over the
restored files. With ``master_socket`` set (the master CLI, ``-S``; the Debian unit uses
``/run/haproxy-master.sock``), each reload waits until ``show proc`` reports one more reload, and fails
when HAProxy counts it as failed.

``mode="runtime_api"`` writes the PEM the same way (so a restart later loads the same certificate), then
swaps it in the running process without a reload, over the admin socket (``stats socket ... level
admin``): ``set ssl cert <name> <<`` with the PEM as payload, then ``commit ssl cert <name>``. The PEM is
read from the installed file at that moment, so a rollback (files restored, step run again) pushes the
previous certificate back the same way. ``<name>`` is the path as written in ``haproxy.cfg``: by default
``pem_path``, or ``runtime_certificate_name`` when the configuration refers to it differently (crt-base).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from certctl.agent.deploy.base import Deployer, Material, Step, StepFailed
from certctl.agent.deploy.commands import command_step, describe
from certctl.agent.deploy.primitive import FileSpec
from certctl.agent.targets import TargetType
from certctl.agent.targets.common import AbsolutePath, Argv, FileMode, Snapshots, TargetOptions, TlsVerify
from certctl.agent.targets.filebased import FileTarget, parent_directories, text_file

_ANSWER_LIMIT = 64 * 1024
_MASTER_POLL_SECONDS = 0.1
_MASTER_LINE = re.compile(
    r"^\d+\s+master\s+(?P<reloads>\d+)(?:\s+\[failed:\s*(?P<failed>\d+)\])?", re.MULTILINE
)


class HaproxyOptions(TargetOptions):
    pem_path: AbsolutePath
    """Leaf, chain and key in one file, as ``bind ... ssl crt <pem_path>`` reads it; 0600 by default."""
    pem_file_mode: FileMode = FileMode()
    mode: Literal["reload", "runtime_api"] = "reload"
    test_command: Argv = Field(default_factory=lambda: ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"])
    reload_command: Argv = Field(default_factory=lambda: ["systemctl", "reload", "haproxy"])
    """Used in ``reload`` mode."""
    master_socket: AbsolutePath | None = None
    """In ``reload`` mode: the master CLI socket (``-S``); each reload then waits until it is done."""
    reload_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    runtime_socket: AbsolutePath | None = None
    """The admin-level ``stats socket`` path; required in ``runtime_api`` mode."""
    runtime_certificate_name: str | None = None
    """The certificate's name in HAProxy when it differs from ``pem_path``."""
    runtime_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    verify: TlsVerify | None = None
    snapshots: Snapshots = Snapshots()

    @model_validator(mode="after")
    def _runtime_settings(self) -> HaproxyOptions:
        if self.mode == "runtime_api" and self.runtime_socket is None:
            raise ValueError("runtime_api mode needs runtime_socket")
        name = self.runtime_certificate_name or self.pem_path
        if not name or any(character.isspace() for character in name):
            raise ValueError("the runtime certificate name must be non-empty and contain no whitespace")
        return self


@dataclass(frozen=True)
class RuntimeCertificateUpdate:
    """A :data:`Step` pushing the installed PEM into the running HAProxy (``set`` then ``commit``)."""

    socket_path: Path
    pem_path: Path
    name: str
    timeout_seconds: float = 10.0

    @property
    def description(self) -> str:
        return f"HAProxy runtime API update of {self.name}"

    async def __call__(self) -> None:
        try:
            pem = self.pem_path.read_text()
        except OSError as exc:
            raise StepFailed(f"cannot read {self.pem_path}: {exc.strerror or exc}") from None
        # The payload ends at the first empty line, so the PEM must not contain one.
        payload = "\n".join(line for line in pem.splitlines() if line.strip())
        answer = await self._command(f"set ssl cert {self.name} <<\n{payload}\n\n")
        if "Transaction" not in answer:
            await self._abort()
            raise StepFailed(f"HAProxy refused the certificate {self.name}: {_summary(answer)}")
        answer = await self._command(f"commit ssl cert {self.name}\n")
        if "Success" not in answer:
            await self._abort()
            raise StepFailed(f"HAProxy did not commit {self.name}: {_summary(answer)}")

    async def _abort(self) -> None:
        # Nothing pending, or the socket is gone: the caller reports the original failure either way.
        with contextlib.suppress(StepFailed):
            await self._command(f"abort ssl cert {self.name}\n")

    async def _command(self, command: str) -> str:
        """One command per connection: HAProxy answers and closes (non-interactive mode)."""
        try:
            return await asyncio.wait_for(self._exchange(command), self.timeout_seconds)
        except TimeoutError:
            raise StepFailed(f"HAProxy admin socket {self.socket_path} did not answer") from None
        except OSError as exc:
            raise StepFailed(f"HAProxy admin socket {self.socket_path}: {exc.strerror or exc}") from None

    async def _exchange(self, command: str) -> str:
        reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        try:
            writer.write(command.encode())
            await writer.drain()
            answer = bytearray()
            while chunk := await reader.read(4096):
                answer.extend(chunk[: max(_ANSWER_LIMIT - len(answer), 0)])
            return answer.decode("utf-8", "replace")
        finally:
            writer.close()


@dataclass(frozen=True)
class MasterReload:
    """A :data:`Step`: run the reload command, then wait until the master CLI reports the reload done."""

    command: Step
    master_socket: Path
    timeout_seconds: float = 30.0

    @property
    def description(self) -> str:
        return f"{describe(self.command, 'reload')} (waiting for the HAProxy master)"

    async def __call__(self) -> None:
        before = await self._counts()
        if before is None:
            raise StepFailed(f"HAProxy master socket {self.master_socket} does not answer 'show proc'")
        await self.command()
        deadline = asyncio.get_running_loop().time() + self.timeout_seconds
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(_MASTER_POLL_SECONDS)
            now = await self._counts()  # None while the master re-executes itself
            if now is None:
                continue
            if now.failed > before.failed:
                raise StepFailed("HAProxy reported the reload as failed (see its log)")
            if now.reloads > before.reloads:
                return
        raise StepFailed(f"HAProxy did not finish the reload within {self.timeout_seconds:g} s")

    async def _counts(self) -> _ReloadCounts | None:
        try:
            answer = await asyncio.wait_for(_ask_master(self.master_socket, "show proc"), 5.0)
        except (OSError, TimeoutError):
            return None
        match = _MASTER_LINE.search(answer)
        if match is None:
            return None
        return _ReloadCounts(reloads=int(match["reloads"]), failed=int(match["failed"] or 0))


@dataclass(frozen=True)
class _ReloadCounts:
    reloads: int
    failed: int


async def _ask_master(socket_path: Path, command: str) -> str:
    """One master CLI command: send it, close our side, read the answer to the end."""
    reader, writer = await asyncio.open_unix_connection(str(socket_path))
    try:
        writer.write(command.encode() + b"\n")
        writer.write_eof()
        answer = bytearray()
        while (chunk := await reader.read(4096)) and len(answer) < _ANSWER_LIMIT:
            answer.extend(chunk)
        return answer.decode("utf-8", "replace")
    finally:
        writer.close()


def _summary(answer: str) -> str:
    lines = [line.strip() for line in answer.splitlines() if line.strip()]
    return " / ".join(lines[:3]) or "(no answer)"


def _files(options: HaproxyOptions, material: Material) -> list[FileSpec]:
    combined = material.fullchain_pem.rstrip("\n") + "\n" + material.private_key_pem.lstrip("\n")
    return [text_file(options.pem_path, combined, options.pem_file_mode, secret=True)]


def _push_step(options: HaproxyOptions) -> Step:
    if options.mode == "reload":
        reload = command_step(options.reload_command)
        if options.master_socket is None:
            return reload
        return MasterReload(
            command=reload,
            master_socket=Path(options.master_socket),
            timeout_seconds=options.reload_timeout_seconds,
        )
    assert options.runtime_socket is not None  # the model validator guarantees it
    return RuntimeCertificateUpdate(
        socket_path=Path(options.runtime_socket),
        pem_path=Path(options.pem_path),
        name=options.runtime_certificate_name or options.pem_path,
        timeout_seconds=options.runtime_timeout_seconds,
    )


def build(options: HaproxyOptions, state_dir: Path) -> Deployer:
    return FileTarget(
        type_name="haproxy",
        files=lambda material: _files(options, material),
        directories=parent_directories(options.pem_path),
        state_dir=state_dir,
        snapshots=options.snapshots,
        check_step=command_step(options.test_command),
        reload_step=_push_step(options),
        verify=options.verify,
    )


HAPROXY = TargetType(
    name="haproxy",
    description="HAProxy: combined PEM, config test, reload or hot swap through the runtime API",
    options_model=HaproxyOptions,
    build=build,
)
