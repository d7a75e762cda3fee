"""``certctl roles`` (built-in and custom roles) and ``certctl keys grant|grants|ungrant`` (who holds what).

Grants may be scoped to one profile or issuer and may expire; the server refuses any grant of
permissions the caller does not hold in that scope.
"""

from __future__ import annotations

from typing import Annotated

import typer

from certctl.cli.client import api_path
from certctl.cli.output import note
from certctl.cli.resources.common import Api, UsageError, api_command, given
from certctl.cli.resources.keys import KeyId
from certctl.cli.resources.keys import app as keys_app

app = typer.Typer(
    help="Roles: named sets of permissions (seven built in, plus your own).", no_args_is_help=True
)

RoleName = Annotated[str, typer.Argument(help="Role name.", show_default=False)]
Permissions = Annotated[list[str] | None, typer.Option("--permission", help="Permission; repeatable.")]


@app.command("list")
@api_command
def list_roles(api: Api) -> None:
    """List built-in and custom roles."""
    api.show(api.client.get(api_path("auth", "roles")))


@app.command("get")
@api_command
def get_role(api: Api, name: RoleName) -> None:
    """Show a role and its permissions."""
    api.show(api.client.get(api_path("auth", "roles", name)))


@app.command("create")
@api_command
def create_role(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique role name.", show_default=False)],
    permission: Permissions = None,
    description: Annotated[str, typer.Option(help="What the role is for.")] = "",
) -> None:
    """Create a custom role, e.g. --permission cert.read --permission cert.renew."""
    if not permission:
        raise UsageError("give at least one --permission")
    body = {"name": name, "description": description, "permissions": list(permission)}
    api.show(api.client.post(api_path("auth", "roles"), body))


@app.command("update")
@api_command
def update_role(
    api: Api,
    name: RoleName,
    add: Annotated[list[str] | None, typer.Option("--add", help="Permission to add; repeatable.")] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="Permission to remove; repeatable.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="New description.")] = None,
) -> None:
    """Add or remove permissions of a custom role."""
    body: dict[str, object] = {"add": list(add or []), "remove": list(remove or [])}
    body.update(given(description=description))
    api.show(api.client.patch(api_path("auth", "roles", name), body))


@app.command("delete")
@api_command
def delete_role(api: Api, name: RoleName) -> None:
    """Delete a custom role (refused while it is granted)."""
    api.client.delete(api_path("auth", "roles", name))
    note(f"deleted role {name}")


@keys_app.command("grants")
@api_command
def list_grants(api: Api, key_id: KeyId) -> None:
    """List a key's grants (role, scope, expiry)."""
    api.show(api.client.get(api_path("keys", key_id, "grants")))


@keys_app.command("grant")
@api_command
def add_grant(
    api: Api,
    key_id: KeyId,
    role: Annotated[str, typer.Option(help="Role to grant.", show_default=False)],
    profile: Annotated[str | None, typer.Option(help="Only on this profile (id or name).")] = None,
    issuer: Annotated[str | None, typer.Option(help="Only on this issuer (id or name).")] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, help="Expire after this many days.")] = None,
) -> None:
    """Grant a role to a key, globally or on one profile or issuer, optionally for a limited time."""
    if profile and issuer:
        raise UsageError("a grant is scoped to one profile or one issuer, not both")
    body: dict[str, object] = {"role": role, "expires_in_days": expires_in_days}
    if profile:
        body |= {"scope": "profile", "scope_id": profile}
    elif issuer:
        body |= {"scope": "issuer", "scope_id": issuer}
    api.show(api.client.post(api_path("keys", key_id, "grants"), body))


@keys_app.command("ungrant")
@api_command
def remove_grant(
    api: Api, key_id: KeyId, grant_id: Annotated[str, typer.Argument(help="Grant id.", show_default=False)]
) -> None:
    """Take a grant away from a key."""
    api.client.delete(api_path("keys", key_id, "grants", grant_id))
    note(f"removed grant {grant_id} from key {key_id}")
