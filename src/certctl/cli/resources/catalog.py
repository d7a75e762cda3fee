"""``certctl issuers``, ``teams`` and ``owners``: the catalogue objects certificates refer to.

Profiles, which carry a rule set of their own, are in :mod:`certctl.cli.resources.profiles`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from certctl.cli.client import api_path
from certctl.cli.output import note, print_table
from certctl.cli.resources.common import Api, CliError, UsageError, api_command, given, parse_pairs

issuers = typer.Typer(
    help="Issuers: the connectors that sign certificates (type local: a CA of this server).",
    no_args_is_help=True,
)
teams = typer.Typer(help="Teams that certificates and owners belong to.", no_args_is_help=True)
owners = typer.Typer(help="Owners: who answers for a certificate.", no_args_is_help=True)

Ref = Annotated[str, typer.Argument(help="Id or name.", show_default=False)]
OptionPairs = Annotated[
    list[str] | None, typer.Option("--option", help="Connector option key=value (type local: ca=CA-NAME).")
]


def _deleted(kind: str, ref: str) -> None:
    note(f"deleted {kind} {ref}")


@issuers.command("list")
@api_command
def list_issuers(api: Api) -> None:
    """List issuers."""
    api.show(api.client.get(api_path("issuers")), kind="issuer")


@issuers.command("get")
@api_command
def get_issuer(api: Api, ref: Ref) -> None:
    """Show one issuer."""
    api.show(api.client.get(api_path("issuers", ref)))


@issuers.command("create")
@api_command
def create_issuer(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique issuer name.", show_default=False)],
    issuer_type: Annotated[
        str, typer.Option("--type", help="Connector type (see the server's issuer-types).")
    ],
    option: OptionPairs = None,
    enabled: Annotated[
        bool, typer.Option("--enabled/--disabled", help="Usable for issuance right away.")
    ] = True,
) -> None:
    """Create an issuer, e.g. --type local --option ca=issuing-ca."""
    body = {
        "name": name,
        "type": issuer_type,
        "options": parse_pairs(option or [], "--option"),
        "enabled": enabled,
    }
    api.show(api.client.post(api_path("issuers"), body))


@issuers.command("update")
@api_command
def update_issuer(
    api: Api,
    ref: Ref,
    name: Annotated[str | None, typer.Option(help="Rename the issuer.")] = None,
    option: OptionPairs = None,
    remove_option: Annotated[
        list[str] | None, typer.Option("--remove-option", help="Option key to drop.")
    ] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Allow or stop issuance.")
    ] = None,
) -> None:
    """Change an issuer; --option values are merged into its current options."""
    body: dict[str, Any] = given(name=name, enabled=enabled)
    if option or remove_option:
        current = api.client.get(api_path("issuers", ref))
        options = dict(current.get("options") or {})
        options.update(parse_pairs(option or [], "--option"))
        for key in remove_option or []:
            options.pop(key, None)
        body["options"] = options
    if not body:
        raise UsageError("nothing to change; pass at least one option (see --help)")
    api.show(api.client.patch(api_path("issuers", ref), body))


@issuers.command("delete")
@api_command
def delete_issuer(api: Api, ref: Ref) -> None:
    """Delete an issuer that no certificate uses."""
    api.client.delete(api_path("issuers", ref))
    _deleted("issuer", ref)


@issuers.command("test")
@api_command
def test_issuer(api: Api, ref: Ref) -> None:
    """Check that an issuer can sign right now; exit code 1 when a check fails."""
    answer = api.client.post(api_path("issuers", ref, "test"))
    if api.json:
        api.show(answer)
    else:
        print_table(answer.get("checks") or [], "check")
    if not answer.get("ok"):
        failed = [str(c.get("check")) for c in answer.get("checks") or [] if not c.get("ok")]
        raise CliError(f"issuer {ref} failed its checks: {', '.join(failed) or 'unknown'}")


@teams.command("list")
@api_command
def list_teams(api: Api) -> None:
    """List teams."""
    api.show(api.client.get(api_path("teams")), kind="team")


@teams.command("create")
@api_command
def create_team(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique team name.", show_default=False)],
    description: Annotated[str, typer.Option(help="Free text.")] = "",
) -> None:
    """Create a team."""
    api.show(api.client.post(api_path("teams"), {"name": name, "description": description}))


@teams.command("delete")
@api_command
def delete_team(api: Api, ref: Ref) -> None:
    """Delete a team that no certificate belongs to."""
    api.client.delete(api_path("teams", ref))
    _deleted("team", ref)


@owners.command("list")
@api_command
def list_owners(api: Api) -> None:
    """List owners."""
    api.show(api.client.get(api_path("owners")), kind="owner")


@owners.command("create")
@api_command
def create_owner(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique owner name.", show_default=False)],
    email: Annotated[str, typer.Option(help="Where expiry alerts go.")] = "",
    team: Annotated[str | None, typer.Option(help="Team id or name.")] = None,
) -> None:
    """Create an owner."""
    api.show(api.client.post(api_path("owners"), {"name": name, "email": email, "team": team}))


@owners.command("delete")
@api_command
def delete_owner(api: Api, ref: Ref) -> None:
    """Delete an owner that no certificate belongs to."""
    api.client.delete(api_path("owners", ref))
    _deleted("owner", ref)
