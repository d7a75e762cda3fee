"""``certctl sso`` (OpenID providers, group mappings, federated users) and ``certctl sessions``
(dashboard sessions and their signing keys).

A provider's client secret is read from a file or a prompt, never from the command line (where it would
land in shell history and the process list).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from certctl.cli.client import api_path
from certctl.cli.output import Column, emit, field, note, when
from certctl.cli.resources.common import Api, api_command, fail

sso = typer.Typer(help="Single sign-on: OpenID providers, group mappings, users.", no_args_is_help=True)
providers = typer.Typer(help="OpenID providers operators sign in with.", no_args_is_help=True)
mappings = typer.Typer(help="Which provider groups hold which roles.", no_args_is_help=True)
sso.add_typer(providers, name="providers")
sso.add_typer(mappings, name="mappings")
sessions = typer.Typer(
    help="Dashboard sessions: list and revoke; rotate the cookie signing key.", no_args_is_help=True
)

PROVIDERS = ("auth", "oidc", "providers")
PROVIDER_COLUMNS: tuple[Column, ...] = (
    field("NAME", "name"),
    field("ISSUER", "issuer"),
    field("CLIENT", "client_id"),
    field("SECRET", "client_secret_set"),
    field("GROUPS", "groups_claim"),
    field("ENABLED", "enabled"),
)
MAPPING_COLUMNS: tuple[Column, ...] = (
    field("ID", "id"),
    field("GROUP", "group_name"),
    field("ROLE", "role"),
    field("SCOPE", "scope_type"),
    field("SCOPE ID", "scope_id"),
)
USER_COLUMNS: tuple[Column, ...] = (
    field("ID", "id"),
    field("EMAIL", "email"),
    field("NAME", "name"),
    field("PROVIDER", "provider_id"),
    field("LAST SIGN-IN", "last_login_at", when),
)
SESSION_COLUMNS: tuple[Column, ...] = (
    field("HANDLE", "handle"),
    field("TYPE", "principal_type"),
    field("PRINCIPAL", "principal_id"),
    field("CLIENT", "client_ip"),
    field("CREATED", "created_at", when),
    field("LAST SEEN", "last_seen_at", when),
    field("EXPIRES", "expires_at", when),
)


def _table(columns: tuple[Column, ...], items: list[dict[str, Any]]) -> None:
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in columns:
        table.add_column(column.header, overflow="fold")
    for item in items:
        table.add_row(*(column.cell(item) for column in columns))
    emit(table)


def _read_secret(path: Path | None, prompt: bool) -> str | None:
    if path is not None:
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise fail(f"cannot read {path}: {exc.strerror or exc}") from None
        if not value:
            raise fail(f"{path} is empty")
        return value
    if prompt:
        return str(typer.prompt("Client secret", hide_input=True))
    return None


SecretFile = Annotated[
    Path | None,
    typer.Option("--client-secret-file", help="File holding the client secret.", show_default=False),
]
PromptSecret = Annotated[bool, typer.Option("--prompt-client-secret", help="Ask for the client secret.")]


@providers.command("add")
@api_command
def add_provider(
    api: Api,
    name: Annotated[str, typer.Argument(help="Short name (used in sign-in URLs).", show_default=False)],
    issuer: Annotated[str, typer.Option(help="Issuer URL.", show_default=False)],
    client_id: Annotated[str, typer.Option(help="Client id registered at the provider.", show_default=False)],
    client_secret_file: SecretFile = None,
    prompt_client_secret: PromptSecret = False,
    display_name: Annotated[str | None, typer.Option(help="Label on the sign-in page.")] = None,
    scope: Annotated[list[str] | None, typer.Option(help="Scope to request (repeat).")] = None,
    groups_claim: Annotated[str | None, typer.Option(help="Claim (or dotted path) holding groups.")] = None,
    groups_format: Annotated[str | None, typer.Option(help="list, comma or space.")] = None,
    email_domain: Annotated[list[str] | None, typer.Option(help="Allowed e-mail domain (repeat).")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it switched off.")] = False,
) -> None:
    """Add a provider. Register <server>/auth/oidc/callback as its redirect URI."""
    body: dict[str, Any] = {"name": name, "issuer": issuer, "client_id": client_id, "enabled": not disabled}
    secret = _read_secret(client_secret_file, prompt_client_secret)
    for key, value in (
        ("client_secret", secret),
        ("display_name", display_name),
        ("scopes", scope),
        ("groups_claim", groups_claim),
        ("groups_format", groups_format),
        ("allowed_email_domains", email_domain),
    ):
        if value is not None:
            body[key] = value
    answer = api.client.post(api_path(*PROVIDERS), body)
    if api.json:
        api.show(answer)
        return
    note(f"added provider {answer.get('name')!r}")
    _table(PROVIDER_COLUMNS, [answer])


@providers.command("list")
@api_command
def list_providers(api: Api) -> None:
    """List providers (never their client secrets)."""
    answer = api.client.get(api_path(*PROVIDERS))
    if api.json:
        api.show(answer)
        return
    _table(PROVIDER_COLUMNS, answer.get("items", []))


@providers.command("update")
@api_command
def update_provider(
    api: Api,
    name: Annotated[str, typer.Argument(help="Provider name or id.", show_default=False)],
    issuer: Annotated[str | None, typer.Option(help="Issuer URL.")] = None,
    client_id: Annotated[str | None, typer.Option(help="Client id.")] = None,
    client_secret_file: SecretFile = None,
    prompt_client_secret: PromptSecret = False,
    display_name: Annotated[str | None, typer.Option(help="Label on the sign-in page.")] = None,
    scope: Annotated[
        list[str] | None, typer.Option(help="Scope to request (repeat; replaces the list).")
    ] = None,
    groups_claim: Annotated[str | None, typer.Option(help="Claim (or dotted path) holding groups.")] = None,
    groups_format: Annotated[str | None, typer.Option(help="list, comma or space.")] = None,
    email_domain: Annotated[list[str] | None, typer.Option(help="Allowed e-mail domain (repeat).")] = None,
    enable: Annotated[bool | None, typer.Option("--enable/--disable", help="Switch it on or off.")] = None,
) -> None:
    """Change a provider's settings."""
    body: dict[str, Any] = {}
    for key, value in (
        ("issuer", issuer),
        ("client_id", client_id),
        ("client_secret", _read_secret(client_secret_file, prompt_client_secret)),
        ("display_name", display_name),
        ("scopes", scope),
        ("groups_claim", groups_claim),
        ("groups_format", groups_format),
        ("allowed_email_domains", email_domain),
        ("enabled", enable),
    ):
        if value is not None:
            body[key] = value
    answer = api.client.patch(api_path(*PROVIDERS, name), body)
    if api.json:
        api.show(answer)
        return
    _table(PROVIDER_COLUMNS, [answer])


@providers.command("remove")
@api_command
def remove_provider(
    api: Api, name: Annotated[str, typer.Argument(help="Provider name or id.", show_default=False)]
) -> None:
    """Delete a provider (refused while it has live sessions)."""
    api.client.delete(api_path(*PROVIDERS, name))
    note(f"removed provider {name!r}")


@mappings.command("add")
@api_command
def add_mapping(
    api: Api,
    provider: Annotated[str, typer.Argument(help="Provider name or id.", show_default=False)],
    group: Annotated[str, typer.Option(help="Group as the provider names it.", show_default=False)],
    role: Annotated[str, typer.Option(help="Role its members hold.", show_default=False)],
    scope: Annotated[str, typer.Option(help="global, profile or issuer.")] = "global",
    scope_id: Annotated[str | None, typer.Option(help="Profile or issuer (id or name).")] = None,
) -> None:
    """Map a group to a role (members' sessions end, so they sign in again with the new roles)."""
    body: dict[str, Any] = {"group": group, "role": role, "scope": scope}
    if scope_id is not None:
        body["scope_id"] = scope_id
    answer = api.client.post(api_path(*PROVIDERS, provider, "mappings"), body)
    if api.json:
        api.show(answer)
        return
    _table(MAPPING_COLUMNS, [answer])


@mappings.command("list")
@api_command
def list_mappings(
    api: Api, provider: Annotated[str, typer.Argument(help="Provider name or id.", show_default=False)]
) -> None:
    """List a provider's group mappings."""
    answer = api.client.get(api_path(*PROVIDERS, provider, "mappings"))
    if api.json:
        api.show(answer)
        return
    _table(MAPPING_COLUMNS, answer.get("items", []))


@mappings.command("remove")
@api_command
def remove_mapping(
    api: Api,
    provider: Annotated[str, typer.Argument(help="Provider name or id.", show_default=False)],
    mapping_id: Annotated[str, typer.Argument(help="Mapping id.", show_default=False)],
) -> None:
    """Remove a group mapping."""
    api.client.delete(api_path(*PROVIDERS, provider, "mappings", mapping_id))
    note(f"removed mapping {mapping_id!r}")


@sso.command("users")
@api_command
def list_users(
    api: Api, provider: Annotated[str | None, typer.Option(help="Only this provider's users.")] = None
) -> None:
    """People who signed in through a provider, most recent first."""
    answer = api.client.get(api_path("auth", "users"), params={"provider": provider} if provider else None)
    if api.json:
        api.show(answer)
        return
    _table(USER_COLUMNS, answer.get("items", []))


@sessions.command("list")
@api_command
def list_sessions(
    api: Api,
    principal_type: Annotated[str | None, typer.Option(help="api_key, user or breakglass.")] = None,
    principal_id: Annotated[str | None, typer.Option(help="The principal's id.")] = None,
    mine: Annotated[bool, typer.Option("--mine", help="Only sessions opened with this API key.")] = False,
) -> None:
    """Live dashboard sessions (never their cookies)."""
    if mine:
        answer = api.client.get(api_path("auth", "sessions", "mine"))
    else:
        params = {"principal_type": principal_type, "principal_id": principal_id}
        answer = api.client.get(api_path("auth", "sessions"), params={k: v for k, v in params.items() if v})
    if api.json:
        api.show(answer)
        return
    _table(SESSION_COLUMNS, answer.get("items", []))


@sessions.command("revoke")
@api_command
def revoke_session(
    api: Api,
    handle: Annotated[str | None, typer.Argument(help="Session handle.", show_default=False)] = None,
    principal_type: Annotated[
        str | None, typer.Option(help="End every session of this principal type...")
    ] = None,
    principal_id: Annotated[str | None, typer.Option(help="...and id.")] = None,
) -> None:
    """End one session (by handle) or all sessions of one principal."""
    if handle:
        api.client.delete(api_path("auth", "sessions", handle))
        note(f"revoked session {handle}")
        return
    if not (principal_type and principal_id):
        raise fail("give a session handle, or --principal-type and --principal-id")
    answer = api.client.post(
        api_path("auth", "sessions", "revoke"),
        {"principal_type": principal_type, "principal_id": principal_id},
    )
    if api.json:
        api.show(answer)
        return
    note(f"ended {answer.get('sessions_ended', 0)} session(s)")


@sessions.command("rotate-key")
@api_command
def rotate_key(api: Api) -> None:
    """Start signing session cookies with a new key (the old one verifies for one session lifetime)."""
    answer = api.client.post(api_path("auth", "session-keys", "rotate"), {})
    if api.json:
        api.show(answer)
        return
    note(f"new session signing key {answer.get('id')}")
