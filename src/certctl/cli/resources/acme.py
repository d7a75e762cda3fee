"""``certctl acme eab``: external account binding keys of the ACME server (RFC 8555 §7.3.4).

``create`` prints the key id and HMAC key once, as ACME clients take them (``--eab-kid`` and
``--eab-hmac-key``); in table mode those two lines are the only stdout, so a script can read them. JSON
mode prints the whole answer.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from certctl.cli.client import api_path
from certctl.cli.output import Column, emit, field, note, when
from certctl.cli.resources.common import Api, api_command

app = typer.Typer(help="The ACME server: external account binding keys.", no_args_is_help=True)
eab = typer.Typer(help="External account binding keys: create, list and revoke.", no_args_is_help=True)
app.add_typer(eab, name="eab")

EAB_PATH = ("acme", "eab-keys")
EAB_COLUMNS: tuple[Column, ...] = (
    field("KID", "kid"),
    field("NAME", "name"),
    field("PROFILE", "profile"),
    field("EXPIRES", "expires_at", when),
    field("REVOKED", "revoked_at", when),
    field("ACCOUNT", "account_id"),
    field("BOUND", "bound_at", when),
)


@eab.command("create")
@api_command
def create_eab_key(
    api: Api,
    profile: Annotated[str, typer.Option(help="Profile (id or name) whose directory the key binds.")],
    name: Annotated[str | None, typer.Option(help="What the key is for.", show_default=False)] = None,
    expires_in_hours: Annotated[
        int | None, typer.Option(min=1, help="Stop binding after this many hours unused.")
    ] = None,
) -> None:
    """Create a key and print its kid and HMAC key (the HMAC key is shown only once)."""
    body: dict[str, Any] = {"profile": profile}
    if name is not None:
        body["name"] = name
    if expires_in_hours is not None:
        body["expires_in_hours"] = expires_in_hours
    answer = api.client.post(api_path(*EAB_PATH), body)
    if api.json:
        api.show(answer)
        return
    note(f"created EAB key for profile {answer.get('profile')!r}; the HMAC key is shown only once")
    sys.stdout.write(f"kid: {answer.get('kid')}\nhmac_key: {answer.get('hmac_key')}\n")
    sys.stdout.flush()


@eab.command("list")
@api_command
def list_eab_keys(
    api: Api,
    profile: Annotated[str | None, typer.Option(help="Only keys of this profile.")] = None,
) -> None:
    """List keys, newest first (never their HMAC keys)."""
    answer = api.client.get(api_path(*EAB_PATH), params={"profile": profile} if profile else None)
    if api.json:
        api.show(answer)
        return
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in EAB_COLUMNS:
        table.add_column(column.header, overflow="fold")
    for item in answer.get("items", []):
        table.add_row(*(column.cell(item) for column in EAB_COLUMNS))
    emit(table)


@eab.command("revoke")
@api_command
def revoke_eab_key(api: Api, kid: Annotated[str, typer.Argument(help="Key id.", show_default=False)]) -> None:
    """Revoke a key: it binds no new account (an account it bound keeps working)."""
    api.show(api.client.delete(api_path(*EAB_PATH, kid)))
