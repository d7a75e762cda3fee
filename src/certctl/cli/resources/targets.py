"""``certctl targets``: the places certificates are deployed to (an nginx, a keystore, an SSH host, ...),
each served by one agent.

Options come from a JSON file (``--options-file``), checked by the server against the type's schema
(``certctl targets types -o json`` shows it). Secret options (keystore passwords, SSH keys) are read from
files with ``--secret-file NAME=PATH`` so they never appear in shell history or process lists, and merged
into the options; the server seals them and never shows them again, only which are set.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from certctl.cli.client import api_path
from certctl.cli.output import Column, field, note, text, when
from certctl.cli.resources.agents import show_items
from certctl.cli.resources.common import Api, UsageError, api_command, given, parse_pairs
from certctl.cli.resources.files import read_json_object, read_text

__all__ = ["app"]

app = typer.Typer(
    help="Deployment targets: where certificates go, and which agent serves each.", no_args_is_help=True
)

Ref = Annotated[str, typer.Argument(help="Target id or name.", show_default=False)]
OptionsFile = Annotated[
    Path | None,
    typer.Option("--options-file", help="JSON object with the type's options.", show_default=False),
]
SecretFiles = Annotated[
    list[str] | None,
    typer.Option("--secret-file", help="Secret option NAME=PATH read from a file; repeatable."),
]
Description = Annotated[str | None, typer.Option(help="Free text.", show_default=False)]


def _last_check(item: Mapping[str, Any]) -> str:
    check = item.get("last_check")
    if isinstance(check, dict):
        verdict = "ok" if check.get("ok") else f"FAILED: {text(check.get('message'))}"
        return f"{verdict} ({when(check.get('at'))})"
    return "requested" if item.get("check_requested_at") else "-"


TYPE_COLUMNS = (
    field("NAME", "name"),
    field("AGENTLESS", "agentless"),
    field("SECRETS", "secrets"),
    Column("DESCRIPTION", lambda item: text(item.get("description") or item.get("broken"))),
)
TARGET_COLUMNS = (
    field("NAME", "name"),
    field("TYPE", "type"),
    field("AGENT", "agent_id"),
    field("SECRETS SET", "secrets_set"),
    Column("LAST CHECK", _last_check),
    field("ID", "id"),
)


def _secret_value(path: Path, name: str) -> str:
    """A one-line file (a password) loses its line ending; a multi-line one (a key) is kept as it is."""
    content = read_text(path, f"secret {name}")
    single = content.rstrip("\r\n")
    return content if "\n" in single else single


def _options(options_file: Path | None, secret_file: list[str] | None) -> dict[str, Any] | None:
    """The options to send: the file's object with the secrets merged in; None when neither was given."""
    if options_file is None and not secret_file:
        return None
    options = read_json_object(options_file, "options") if options_file is not None else {}
    secrets = {
        name: _secret_value(Path(path), name)
        for name, path in parse_pairs(secret_file or [], "--secret-file").items()
    }
    twice = sorted(set(options) & set(secrets))
    if twice:
        raise UsageError(f"{', '.join(twice)} given both in the options file and with --secret-file")
    return options | secrets


@app.command("types")
@api_command
def target_types(api: Api) -> None:
    """The target types, whether each is agentless (served by a proxy agent), and its secret options."""
    show_items(api, api.client.get(api_path("target-types")), TYPE_COLUMNS)


@app.command("list")
@api_command
def list_targets(
    api: Api,
    agent: Annotated[str | None, typer.Option(help="Only targets this agent (id or name) serves.")] = None,
    target_type: Annotated[str | None, typer.Option("--type", help="Only targets of this type.")] = None,
) -> None:
    """List targets (secrets are never shown, only which are set)."""
    params = given(agent=agent, type=target_type)
    show_items(api, api.client.get(api_path("targets"), params=params or None), TARGET_COLUMNS)


@app.command("get")
@api_command
def get_target(api: Api, ref: Ref) -> None:
    """Show one target with its options and last test result (never its secrets)."""
    api.show(api.client.get(api_path("targets", ref)))


@app.command("create")
@api_command
def create_target(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique target name.", show_default=False)],
    target_type: Annotated[
        str, typer.Option("--type", help="nginx, apache, keystore, ssh, ... (see targets types).")
    ],
    agent: Annotated[str, typer.Option(help="Agent id or name that serves it.", show_default=False)],
    options_file: Annotated[
        Path,
        typer.Option("--options-file", help="JSON object with the type's options.", show_default=False),
    ],
    secret_file: SecretFiles = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
) -> None:
    """Create a target, e.g. --type keystore --options-file ks.json --secret-file password=./ks.pass."""
    body = {"name": name, "type": target_type, "agent": agent, "description": description,
            "options": _options(options_file, secret_file)}  # fmt: skip
    api.show(api.client.post(api_path("targets"), body))


@app.command("update")
@api_command
def update_target(
    api: Api,
    ref: Ref,
    options_file: OptionsFile = None,
    secret_file: SecretFiles = None,
    description: Description = None,
) -> None:
    """Change a target: given options (and secrets) are merged over the stored ones; the agent re-tests it."""
    body = given(options=_options(options_file, secret_file), description=description)
    if not body:
        raise UsageError("nothing to change; pass --options-file, --secret-file or --description")
    api.show(api.client.patch(api_path("targets", ref), body))


@app.command("delete")
@api_command
def delete_target(api: Api, ref: Ref) -> None:
    """Delete a target (only once no certificate is mapped to it)."""
    api.client.delete(api_path("targets", ref))
    note(f"deleted target {ref}")


@app.command("test")
@api_command
def test_target(api: Api, ref: Ref) -> None:
    """Ask the serving agent to test the target (config test, paths, endpoint) at its next poll."""
    api.show(api.client.post(api_path("targets", ref, "test")))
    note(f"the agent tests it at its next poll; see last_check in: certctl targets get {ref}")
