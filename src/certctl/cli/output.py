"""Rendering of API answers for ``--output table|json``.

``json`` prints exactly what the API returned, pretty-printed, on stdout, for scripts and ``jq``.
``table`` prints a rich table with a few chosen columns per kind of resource for lists, and a
two-column field/value table for one object (long PEM fields left out: ``certs export`` gets those).
Status messages never go to stdout, so stdout always stays parseable.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO

from rich.console import Console, RenderableType
from rich.table import Table

PIPE_WIDTH = 200


class OutputFormat(StrEnum):
    """The two renderings every command offers."""

    TABLE = "table"
    JSON = "json"


@dataclass(frozen=True)
class Column:
    """One table column: its header and how to get the cell text from an item."""

    header: str
    cell: Callable[[Mapping[str, Any]], str]


def text(value: Any) -> str:
    """A compact, human-readable rendering of one JSON value."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(text(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={text(v)}" for k, v in value.items()) if value else "-"
    return str(value)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: Any) -> str:
    """An RFC 3339 timestamp as ``YYYY-MM-DD HH:MM`` (UTC)."""
    parsed = _parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if parsed else text(value)


def expiry(value: Any) -> str:
    """An expiry time with the days left, e.g. ``2027-01-05 10:00 (89d)``; negative once expired."""
    parsed = _parse_time(value)
    if parsed is None:
        return text(value)
    days = (parsed - datetime.now(UTC)).days
    return f"{when(value)} ({days}d)"


def field(header: str, key: str, fmt: Callable[[Any], str] = text) -> Column:
    return Column(header, lambda item: fmt(item.get(key)))


def _days(seconds: Any) -> str:
    return f"{int(seconds) // 86400}d" if isinstance(seconds, int) else text(seconds)


def _key(item: Mapping[str, Any]) -> str:
    algorithm, size = item.get("key_algorithm"), item.get("key_size")
    return f"{algorithm}-{size}" if algorithm and size else text(algorithm)


def _rule(header: str, name: str, fmt: Callable[[Any], str] = text) -> Column:
    """A column showing one of a profile's rules."""

    def cell(item: Mapping[str, Any]) -> str:
        rules = item.get("rules")
        return fmt(rules.get(name)) if isinstance(rules, dict) else "-"

    return Column(header, cell)


ID = field("ID", "id")
NAME = field("NAME", "name")

COLUMNS: dict[str, tuple[Column, ...]] = {
    "certificate": (
        NAME,
        field("STATUS", "status"),
        field("COMMON NAME", "common_name"),
        field("SANS", "sans"),
        field("EXPIRES", "not_after", expiry),
        field("ENV", "environment"),
        field("AUTO-RENEW", "auto_renew"),
        ID,
    ),
    "version": (
        ID,
        field("SERIAL", "serial"),
        field("NOT BEFORE", "not_before", when),
        field("NOT AFTER", "not_after", expiry),
        Column("KEY", _key),
        field("KEY HELD", "has_key"),
        field("REVOKED", "revoked_at", when),
    ),
    "issuer": (NAME, field("TYPE", "type"), field("ENABLED", "enabled"), field("OPTIONS", "options"), ID),
    "profile": (
        NAME,
        _rule("KEY ALGORITHMS", "allowed_key_algorithms"),
        _rule("MAX TTL", "max_ttl_seconds", _days),
        _rule("DEFAULT TTL", "default_ttl_seconds", _days),
        _rule("SERVER KEYGEN", "allow_server_keygen"),
        _rule("SAN PATTERNS", "san_patterns"),
        ID,
    ),
    "ca": (
        NAME,
        field("STATUS", "status"),
        field("SUBJECT", "subject"),
        field("KEY", "key_algorithm"),
        field("NOT AFTER", "not_after", expiry),
        field("PARENT", "parent_id"),
        field("KEY HELD", "has_key"),
        ID,
    ),
    "team": (NAME, field("DESCRIPTION", "description"), ID),
    "owner": (NAME, field("EMAIL", "email"), field("TEAM", "team_id"), ID),
    "key": (
        ID,
        NAME,
        field("PREFIX", "prefix"),
        field("ROLES", "roles"),
        field("EXPIRES", "expires_at", when),
        field("REVOKED", "revoked_at", when),
        field("LAST USED", "last_used_at", when),
    ),
    "audit": (
        field("ID", "id"),
        field("WHEN", "occurred_at", when),
        field("ACTOR", "actor"),
        field("ACTION", "action"),
        Column("RESOURCE", lambda item: f"{text(item.get('resource_type'))}/{text(item.get('resource_id'))}"),
        field("OUTCOME", "outcome"),
    ),
    "approval": (
        ID,
        field("STATUS", "status"),
        field("KIND", "kind"),
        field("REQUESTED BY", "requested_by"),
        field("SUMMARY", "summary"),
        field("EXPIRES", "expires_at", when),
        field("DECIDED BY", "decided_by"),
    ),
    "job": (
        ID,
        field("TYPE", "type"),
        field("STATUS", "status"),
        field("CERTIFICATE", "certificate_id"),
        field("ATTEMPTS", "attempts"),
        field("RUN AFTER", "run_after", when),
        field("LAST ERROR", "last_error"),
    ),
    "check": (
        field("CHECK", "check"),
        field("OK", "ok"),
        Column("DETAIL", lambda item: text({k: v for k, v in item.items() if k not in ("check", "ok")})),
    ),
}


def emit(renderable: RenderableType, stream: TextIO | None = None) -> None:
    """Print a rich renderable; never interpreting markup in data, and without trailing blanks when piped."""
    target = stream or sys.stdout
    options: dict[str, Any] = {"markup": False, "highlight": False, "emoji": False, "soft_wrap": False}
    if target.isatty():
        Console(file=target, **options).print(renderable)
        return
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else PIPE_WIDTH
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, **options).print(renderable)
    target.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))
    target.flush()


def print_json(data: Any, stream: TextIO | None = None) -> None:
    target = stream or sys.stdout
    target.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    target.flush()


def print_table(items: Iterable[Mapping[str, Any]], kind: str, stream: TextIO | None = None) -> None:
    """A table of ``items`` with the columns chosen for ``kind`` (see :data:`COLUMNS`)."""
    columns = COLUMNS[kind]
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column.header, overflow="fold")
    for item in items:
        table.add_row(*(column.cell(item) for column in columns))
    emit(table, stream)


def flatten(obj: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Field/value pairs of one object, nested objects one dotted level down, PEM blobs left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in obj.items():
        if key.endswith("_pem"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("tags", "options", "rules", "name_constraints"):
            pairs.extend(flatten(value, prefix=f"{name}."))
        elif isinstance(value, dict) and key in ("rules", "name_constraints"):
            pairs.extend((f"{name}.{k}", text(v)) for k, v in value.items())
        else:
            pairs.append((name, text(value)))
    return pairs


def print_detail(obj: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """One object as a field/value table."""
    table = Table(box=None, show_header=False, pad_edge=False, show_edge=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for name, value in flatten(obj):
        table.add_row(name, value)
    emit(table, stream)


def show(data: Any, output: OutputFormat, *, kind: str | None = None, items_key: str = "items") -> None:
    """Print an API answer: JSON as is, or a list table (when it holds ``items``) or a detail table."""
    if output is OutputFormat.JSON:
        print_json(data)
        return
    if isinstance(data, dict) and isinstance(data.get(items_key), list) and kind is not None:
        print_table(data[items_key], kind)
    elif isinstance(data, list) and kind is not None:
        print_table(data, kind)
    elif isinstance(data, dict):
        print_detail(data)
    else:
        print_json(data)


def note(message: str) -> None:
    """A status line for the person at the terminal, on stderr so stdout stays data only."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
