"""``certctl audit``: read the append-only audit trail and export it for offline verification.

``export`` streams the server's JSON Lines or CSV straight to the file (the trail can be large),
writing to a temporary file first so an interrupted export never looks complete.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from certctl.cli.client import api_path
from certctl.cli.output import note
from certctl.cli.resources.common import Api, api_command
from certctl.cli.resources.files import STDOUT, check_writable

app = typer.Typer(help="The audit trail: who did what, when.", no_args_is_help=True)

Since = Annotated[datetime | None, typer.Option(help="Only events at or after this time (UTC).")]
Until = Annotated[datetime | None, typer.Option(help="Only events before this time (UTC).")]
Action = Annotated[str | None, typer.Option(help="Only this action, e.g. certificate.issue.")]


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() + ("Z" if value.tzinfo is None else "") if value is not None else None


@app.command("list")
@api_command
def list_events(
    api: Api,
    action: Action = None,
    actor: Annotated[str | None, typer.Option(help="Only events by this actor name.")] = None,
    resource_type: Annotated[str | None, typer.Option(help="Only this kind of resource.")] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many events.")] = 50,
) -> None:
    """List audit events, newest first."""
    params = {
        "action": action,
        "actor": actor,
        "resource_type": resource_type,
        "since": _iso(since),
        "until": _iso(until),
        "limit": limit,
    }
    api.show(api.client.get(api_path("audit"), params=params), kind="audit")


@app.command("export")
@api_command
def export_events(
    api: Api,
    out: Annotated[str, typer.Option("--out", help="File to write, or - for stdout.", show_default=False)],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="JSON Lines or CSV.")] = ExportFormat.JSON,
    action: Action = None,
    since: Since = None,
    until: Until = None,
) -> None:
    """Export the trail with its hashes (JSON Lines or CSV), oldest first."""
    params = {"format": fmt.value, "action": action, "since": _iso(since), "until": _iso(until)}
    path = api_path("audit", "export")
    if out == STDOUT:
        api.client.stream_to(path, sys.stdout.buffer, params=params)
        sys.stdout.buffer.flush()
        return
    check_writable(out, "export")
    target = Path(out)
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent if str(target.parent) else ".", prefix=".certctl-"
    )
    try:
        with os.fdopen(descriptor, "wb") as sink:
            written = api.client.stream_to(path, sink, params=params)
        os.chmod(temporary, 0o640)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    note(f"wrote {written} bytes of audit events to {out}")
