"""Deployment steps that run a program: a server's config test or its reload.

Commands are argv lists handed to ``exec`` directly, never to a shell, so a path or option cannot be
reinterpreted. A failing command becomes one readable :class:`StepFailed` line: the program, its exit
status and the last line it printed, which is where daemons put the reason (``nginx -t`` names the
offending file and line there).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from certctl.agent.deploy.base import Step, StepFailed

_OUTPUT_LIMIT = 64 * 1024
"""Bytes of output read back per command: enough for the last line, bounded for chatty programs."""
_LINE_LIMIT = 300


@dataclass(frozen=True)
class CommandStep:
    """A :data:`Step` that runs ``argv`` and fails unless it exits 0 within ``timeout`` seconds."""

    argv: tuple[str, ...]
    timeout: float = 60.0
    env: Mapping[str, str] | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        """How the step appears in a deployment's trail, e.g. ``nginx -t``."""
        return " ".join(self.argv)

    async def __call__(self) -> None:
        program = self.argv[0]
        environment = None if self.env is None else {**os.environ, **self.env}
        # Output goes to an unlinked file, not a pipe: a reload that starts a daemon leaves the daemon
        # holding its output, and waiting for a pipe to close would then wait for the daemon.
        with tempfile.TemporaryFile() as output:
            try:
                process = await asyncio.create_subprocess_exec(
                    *self.argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    env=environment,
                    start_new_session=True,
                )
            except FileNotFoundError:
                raise StepFailed(f"{program}: program not found") from None
            except PermissionError:
                raise StepFailed(f"{program}: not executable") from None
            try:
                returncode = await asyncio.wait_for(process.wait(), self.timeout)
            except TimeoutError:
                _kill_group(process.pid)
                returncode = await process.wait()
                raise StepFailed(
                    f"{program} exited {returncode}: timed out after {self.timeout:g} s and was killed"
                ) from None
            finally:
                if process.returncode is None:  # cancelled from outside: leave no orphan behind
                    _kill_group(process.pid)
            if returncode != 0:
                raise StepFailed(f"{program} exited {returncode}: {_last_line(_tail(output))}")


def command_step(argv: Sequence[str], *, timeout: float = 60, env: Mapping[str, str] | None = None) -> Step:
    """A step running ``argv`` (no shell); ``env`` adds to the agent's own environment."""
    if not argv:
        raise ValueError("a command needs at least the program")
    return CommandStep(argv=tuple(argv), timeout=float(timeout), env=env)


def _tail(output: IO[bytes]) -> bytes:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(size - _OUTPUT_LIMIT, 0))
    return output.read()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _last_line(output: bytes) -> str:
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return "(no output)"
    last = lines[-1]
    return last if len(last) <= _LINE_LIMIT else last[: _LINE_LIMIT - 3] + "..."


def describe(step: Step, fallback: str) -> str:
    """The trail name of a step: its ``description`` when it has one (commands, TLS checks)."""
    description = getattr(step, "description", None)
    return description if isinstance(description, str) and description else fallback
