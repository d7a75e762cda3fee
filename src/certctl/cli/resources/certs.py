"""``certctl certs``: the managed-certificate inventory (list, get, update, archive, versions, export).

Issuing and renewing, which involve private keys, live in :mod:`certctl.cli.resources.issuance`
and are attached to the same sub-app here.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from certctl.cli.client import api_path
from certctl.cli.output import note
from certctl.cli.resources import issuance
from certctl.cli.resources.common import Api, UsageError, api_command, given, items_of, parse_pairs
from certctl.cli.resources.files import STDOUT, check_writable, read_password, refuse_terminal, write_file

app = typer.Typer(help="Managed certificates: issue, renew, inspect, export.", no_args_is_help=True)
app.command("issue")(issuance.issue)
app.command("renew")(issuance.renew)

Ref = Annotated[str, typer.Argument(help="Certificate id or name.", show_default=False)]
PAGE_MAX = 500


class ExportFormat(StrEnum):
    PEM = "pem"
    PKCS12 = "pkcs12"


@app.command("list")
@api_command
def list_certificates(
    api: Api,
    status: Annotated[list[str] | None, typer.Option("--status", help="Repeat to accept several.")] = None,
    issuer: Annotated[str | None, typer.Option(help="Issuer id or name.")] = None,
    profile: Annotated[str | None, typer.Option(help="Profile id or name.")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner id or name.")] = None,
    team: Annotated[str | None, typer.Option(help="Team id or name.")] = None,
    environment: Annotated[str | None, typer.Option(help="Environment label.")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="key=value; repeat to require several.")
    ] = None,
    search: Annotated[str | None, typer.Option(help="Text to find in names.")] = None,
    expires_within_days: Annotated[int | None, typer.Option(min=0, help="Only those expiring soon.")] = None,
    sort: Annotated[str, typer.Option(help="Field to sort by; prefix with - for descending.")] = "name",
    limit: Annotated[int, typer.Option(min=1, max=PAGE_MAX, help="Page size.")] = 50,
    all_pages: Annotated[bool, typer.Option("--all", help="Follow the cursor and fetch every page.")] = False,
) -> None:
    """List managed certificates, filtered and sorted."""
    parse_pairs(tag or [], "--tag")
    params: dict[str, Any] = {
        "status": status or [],
        "issuer": issuer,
        "profile": profile,
        "owner": owner,
        "team": team,
        "environment": environment,
        "tag": tag or [],
        "q": search,
        "expires_within_days": expires_within_days,
        "sort": sort,
        "limit": limit,
    }
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        answer = api.client.get(api_path("certificates"), params={**params, "cursor": cursor})
        items.extend(items_of(answer))
        cursor = answer.get("next_cursor")
        if not all_pages or not cursor:
            break
    api.show({"items": items, "next_cursor": cursor}, kind="certificate")
    if cursor and not api.json:
        note(f"showing the first {len(items)}; pass --all for every certificate or raise --limit")


@app.command("get")
@api_command
def get_certificate(api: Api, ref: Ref) -> None:
    """Show one certificate with its current version."""
    api.show(api.client.get(api_path("certificates", ref)))


@app.command("archive")
@api_command
def archive_certificate(api: Api, ref: Ref) -> None:
    """Archive a certificate: it leaves the inventory views and is never renewed again."""
    api.show(api.client.post(api_path("certificates", ref, "archive")))


@app.command("update")
@api_command
def update_certificate(
    api: Api,
    ref: Ref,
    name: Annotated[str | None, typer.Option(help="Rename the certificate.")] = None,
    owner: Annotated[str | None, typer.Option(help='Owner id or name; "" to clear.')] = None,
    team: Annotated[str | None, typer.Option(help='Team id or name; "" to clear.')] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="key=value to add or change; repeatable.")
    ] = None,
    remove_tag: Annotated[list[str] | None, typer.Option("--remove-tag", help="Tag key to remove.")] = None,
    environment: Annotated[str | None, typer.Option(help="Environment label.")] = None,
    auto_renew: Annotated[
        bool | None, typer.Option("--auto-renew/--no-auto-renew", help="Renew automatically before expiry.")
    ] = None,
) -> None:
    """Change a certificate's metadata (names, issuer and profile stay; renew to change the certificate)."""
    body: dict[str, Any] = given(name=name)
    if owner is not None:
        body["owner"] = owner or None
    if team is not None:
        body["team"] = team or None
    body.update(given(environment=environment, auto_renew=auto_renew))
    if tag or remove_tag:
        current = api.client.get(api_path("certificates", ref))
        tags = dict(current.get("tags") or {})
        tags.update(parse_pairs(tag or [], "--tag"))
        for key in remove_tag or []:
            tags.pop(key, None)
        body["tags"] = tags
    if not body:
        raise UsageError("nothing to change; pass at least one option (see --help)")
    api.show(api.client.patch(api_path("certificates", ref), body))


@app.command("versions")
@api_command
def certificate_versions(api: Api, ref: Ref) -> None:
    """List every issued version of a certificate with serial, validity and key."""
    api.show(api.client.get(api_path("certificates", ref, "versions")), kind="version")


@app.command("export")
@api_command
def export_certificate(
    api: Api,
    ref: Ref,
    out: Annotated[str, typer.Option("--out", help="File to write, or - for stdout.", show_default=False)],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Container format.")] = ExportFormat.PEM,
    include_key: Annotated[
        bool, typer.Option(help="Include the private key (server-held keys only).")
    ] = False,
    password_file: Annotated[
        Path | None, typer.Option(help="File whose first line is the PKCS#12 password.", show_default=False)
    ] = None,
) -> None:
    """Export the current certificate and chain (and key) as PEM or PKCS#12."""
    pkcs12 = fmt is ExportFormat.PKCS12
    if pkcs12 and include_key and password_file is None:
        raise UsageError("--password-file is required to export a private key as PKCS#12")
    if pkcs12:
        refuse_terminal(out, "PKCS#12 file")
    if include_key:
        refuse_terminal(out, "private key")
    check_writable(out, "export")
    body: dict[str, Any] = {"format": fmt.value, "include_key": include_key}
    if password_file is not None:
        body["password"] = read_password(password_file)
    content = api.client.download("POST", api_path("certificates", ref, "export"), json=body)
    write_file(out, content, private=include_key)
    if out != STDOUT:
        note(f"wrote {fmt.value.upper()} {'with private key ' if include_key else ''}to {out}")
