"""Option pieces every target type shares, validated the same way on the server and on the agent.

Paths are absolute; commands are argv lists whose items carry no shell metacharacters (they are never
given to a shell, and refusing them keeps a pasted shell line from being mistaken for a command);
unknown options are refused.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_SHELL_META = re.compile(r"[;&|`$<>\n\r\\*?(){}\[\]!#~'\"]")


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path")
    if "\x00" in value or any(part == ".." for part in value.split("/")):
        raise ValueError(f"{value!r} must not contain '..' or NUL")
    return value


def _argv(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("a command needs at least the program")
    for item in value:
        if _SHELL_META.search(item):
            raise ValueError(f"command item {item!r} contains a shell metacharacter")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute)]
Argv = Annotated[list[str], AfterValidator(_argv)]


class TargetOptions(BaseModel):
    """Base of every target's options: frozen, and unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class FileMode(TargetOptions):
    """Owner and mode of one written file. Unset: the existing file's, else the target's default."""

    owner: str | None = None
    group: str | None = None
    mode: Annotated[int, Field(ge=0, le=0o777)] | None = None


class TlsVerify(TargetOptions):
    """After a reload, connect here and check that the endpoint serves the new certificate."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)]
    server_name: str | None = None
    starttls: Literal["smtp", "imap"] | None = None
    attempts: Annotated[int, Field(ge=1, le=60)] = 10
    delay_seconds: Annotated[float, Field(ge=0, le=30)] = 0.5
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0


class Snapshots(TargetOptions):
    keep: Annotated[int, Field(ge=1, le=50)] = 3
    """How many previous versions of the files to keep next to the target's state."""
