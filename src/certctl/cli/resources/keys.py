"""``certctl keys`` (API key lifecycle) and ``certctl whoami``.

A new or rotated secret is shown once. In table mode it is the only thing written to stdout, so
``KEY=$(certctl keys create ...)`` captures exactly the secret; the key's id and name go to stderr.
JSON mode prints the whole answer (``key`` and ``secret``).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from certctl.cli.client import api_path
from certctl.cli.output import note
from certctl.cli.resources.common import Api, api_command

app = typer.Typer(
    help="API keys: create, rotate and revoke the keys clients authenticate with.", no_args_is_help=True
)

KeyId = Annotated[str, typer.Argument(help="API key id.", show_default=False)]


def _secret(api: Api, answer: dict[str, Any], verb: str) -> None:
    if api.json:
        api.show(answer)
        return
    key = answer.get("key") or {}
    note(f"{verb} API key {key.get('name')!r} (id {key.get('id')}); the secret below is shown only once")
    sys.stdout.write(str(answer.get("secret", "")) + "\n")
    sys.stdout.flush()


@app.command("list")
@api_command
def list_keys(api: Api) -> None:
    """List API keys (never their secrets)."""
    api.show(api.client.get(api_path("keys")), kind="key")


@app.command("get")
@api_command
def get_key(api: Api, key_id: KeyId) -> None:
    """Show one API key."""
    api.show(api.client.get(api_path("keys", key_id)))


@app.command("create")
@api_command
def create_key(
    api: Api,
    name: Annotated[str, typer.Option(help="What the key is for.", show_default=False)],
    role: Annotated[
        list[str],
        typer.Option("--role", help="admin, operator, viewer or auditor; repeatable.", show_default=False),
    ],
    expires_in_days: Annotated[int | None, typer.Option(min=1, help="Expire after this many days.")] = None,
) -> None:
    """Create an API key and print its secret (shown once)."""
    body = {"name": name, "roles": list(role), "expires_in_days": expires_in_days}
    _secret(api, api.client.post(api_path("keys"), body), "created")


@app.command("rotate")
@api_command
def rotate_key(api: Api, key_id: KeyId) -> None:
    """Give a key a new secret (same id, name and roles); the old secret stops working."""
    _secret(api, api.client.post(api_path("keys", key_id, "rotate")), "rotated")


@app.command("revoke")
@api_command
def revoke_key(api: Api, key_id: KeyId) -> None:
    """Revoke a key for good."""
    api.show(api.client.post(api_path("keys", key_id, "revoke")))


@api_command
def whoami(api: Api) -> None:
    """Show who the API key belongs to, with its roles and permissions."""
    api.show(api.client.get(api_path("auth", "me")))
