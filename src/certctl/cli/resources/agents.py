"""``certctl agents``: the agents that deploy certificates on hosts, and their one-time enrolment tokens.

An enrolment token is shown once. With ``--output-file`` it is written to a new file with mode 0600 (the
file ``certctl agent enrol --token-file`` reads on the host) and never printed; otherwise, in table mode,
it is the only thing on stdout, so ``TOKEN=$(certctl agents enrolment-token create ...)`` captures
exactly the token. Retiring an agent is final, so ``retire`` asks first unless given ``--yes``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from certctl.cli.client import api_path
from certctl.cli.output import Column, emit, field, note, text, when
from certctl.cli.resources.common import Api, CliError, UsageError, api_command, given, items_of
from certctl.cli.resources.files import STDOUT, check_writable, write_file

__all__ = ["app", "show_items"]

app = typer.Typer(help="Agents: the processes that deploy certificates on hosts.", no_args_is_help=True)
tokens = typer.Typer(help="One-time tokens a host spends to enrol its agent.", no_args_is_help=True)
app.add_typer(tokens, name="enrolment-token")

Ref = Annotated[str, typer.Argument(help="Agent id or name.", show_default=False)]


def _platform(item: Mapping[str, Any]) -> str:
    parts = [str(item[key]) for key in ("os", "arch") if item.get(key)]
    return "/".join(parts) or "-"


AGENT_COLUMNS = (
    field("NAME", "name"),
    field("STATUS", "status"),
    field("PROXY", "proxy"),
    field("HOSTNAME", "hostname"),
    Column("PLATFORM", _platform),
    field("VERSION", "version"),
    field("LAST SEEN", "last_seen_at", when),
    field("ID", "id"),
)
TOKEN_COLUMNS = (
    field("NAME", "name"),
    field("PROXY", "proxy"),
    field("EXPIRES", "expires_at", when),
    field("USED", "used_at", when),
    field("AGENT", "agent_id"),
    field("CREATED BY", "created_by"),
    field("ID", "id"),
)


def show_items(api: Api, answer: Any, columns: tuple[Column, ...]) -> None:
    """A list answer as a table with ``columns`` (table mode), or the API's JSON as it came."""
    if api.json:
        api.show(answer)
        return
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column.header, overflow="fold")
    for item in items_of(answer):
        table.add_row(*(column.cell(item) for column in columns))
    emit(table)


@app.command("list")
@api_command
def list_agents(
    api: Api, status: Annotated[str | None, typer.Option(help="active or retired.")] = None
) -> None:
    """List agents with their host, version and when they were last seen."""
    params = {"status": status} if status else None
    show_items(api, api.client.get(api_path("agents"), params=params), AGENT_COLUMNS)


@app.command("get")
@api_command
def get_agent(api: Api, ref: Ref) -> None:
    """Show one agent (never its credential)."""
    api.show(api.client.get(api_path("agents", ref)))


def _confirm_retirement(api: Api, ref: str) -> None:
    """Ask at the terminal; without one, insist on ``--yes`` rather than guess."""
    if not sys.stdin.isatty():
        raise UsageError("retiring an agent cannot be undone; add --yes to go ahead")
    agent = api.client.get(api_path("agents", ref))
    sys.stderr.write(
        f"Retire agent {agent.get('name')!r} on {text(agent.get('hostname'))} ({agent.get('id')})? "
        "It stops deploying for good. [y/N] "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not sys.stderr.isatty():
        sys.stderr.write("\n")  # the terminal echoed the answer, not this stream: end the prompt line
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError(f"agent {ref} was not retired")


@app.command("retire")
@api_command
def retire_agent(
    api: Api,
    ref: Ref,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask: retiring cannot be undone.")] = False,
) -> None:
    """Retire an agent: its credential stops working (410 Gone) and it exits; its targets stay."""
    if not yes:
        _confirm_retirement(api, ref)
    api.show(api.client.post(api_path("agents", ref, "retire")))


@tokens.command("create")
@api_command
def create_token(
    api: Api,
    name: Annotated[str, typer.Option(help="The name the enrolled agent will have.", show_default=False)],
    proxy: Annotated[
        bool, typer.Option("--proxy", help="A proxy agent may serve agentless targets (SSH).")
    ] = False,
    ttl_hours: Annotated[
        int | None, typer.Option(min=1, max=720, help="Valid for this many hours (server default 24).")
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option(
            "--output-file",
            help="Write the token to this new file (mode 0600) instead of printing it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a one-time enrolment token for `certctl agent enrol` (shown once)."""
    if output_file is not None:
        if str(output_file) == STDOUT:
            raise UsageError("--output-file needs a file name; leave it out to print the token")
        check_writable(str(output_file), "token", overwrite=False)
    body = given(name=name, proxy=proxy, ttl_hours=ttl_hours)
    answer = api.client.post(api_path("agents", "enrolment-tokens"), body)
    token = answer.pop("token", None) if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise CliError("the server's answer holds no enrolment token")
    expires = when(answer.get("expires_at"))
    if output_file is not None:
        write_file(str(output_file), (token + "\n").encode(), private=True, exclusive=True)
        note(f"wrote the one-time enrolment token for agent {name!r} to {output_file} (expires {expires})")
        api.show(answer)
        return
    if api.json:
        api.show(answer | {"token": token})
        return
    note(f"enrolment token for agent {name!r} (id {answer.get('id')}, expires {expires}); shown only once")
    sys.stdout.write(token + "\n")
    sys.stdout.flush()


@tokens.command("list")
@api_command
def list_tokens(api: Api) -> None:
    """List enrolment tokens: unused, used (by which agent) or expired; never the tokens themselves."""
    show_items(api, api.client.get(api_path("agents", "enrolment-tokens")), TOKEN_COLUMNS)
