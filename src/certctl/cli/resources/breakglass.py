"""``certctl breakglass set|status|unlock|remove``: the emergency admin account, over the API.

The password never comes from the command line (other users can read process lists and shell history):
``set`` reads it from ``--password-file`` (first line) or asks for it twice at the terminal.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from certctl.cli.client import api_path
from certctl.cli.output import note
from certctl.cli.resources.common import Api, CliError, UsageError, api_command
from certctl.cli.resources.files import read_password

app = typer.Typer(
    help="The break-glass admin account (server must run with CERTCTL_BREAKGLASS_ENABLED=true).",
    no_args_is_help=True,
)

MIN_PASSWORD = 16
PATH = api_path("auth", "breakglass")


def _prompt_password() -> str:
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password; pass --password-file FILE")
    first = getpass.getpass("Break-glass password (16+ characters): ")
    if getpass.getpass("Repeat it: ") != first:
        raise CliError("the two passwords differ; nothing was changed")
    return first


@app.command("set")
@api_command
def set_account(
    api: Api,
    username: Annotated[str, typer.Option(help="Account name (letters, digits, '.', '_', '-').")],
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="File whose first line is the password (else you are asked for it).", show_default=False
        ),
    ] = None,
) -> None:
    """Create or replace the account; ends every break-glass session."""
    password = read_password(password_file) if password_file is not None else _prompt_password()
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password must be at least {MIN_PASSWORD} characters long")
    answer = api.client.request_json("PUT", PATH, json={"username": username, "password": password})
    if api.json:
        api.show(answer)
    else:
        note(f"break-glass account {answer.get('username')!r} set; its earlier sessions have ended")


@app.command("status")
@api_command
def status(api: Api) -> None:
    """Show the account's name, lock state and last use (never its hash)."""
    api.show(api.client.get(PATH))


@app.command("unlock")
@api_command
def unlock(api: Api) -> None:
    """Lift a lockout now and reset the failure counter."""
    api.show(api.client.post(api_path("auth", "breakglass", "unlock")))


@app.command("remove")
@api_command
def remove(api: Api) -> None:
    """Delete the account and end its sessions."""
    api.client.delete(PATH)
    note("break-glass account removed")
