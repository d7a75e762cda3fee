"""``certctl cas``: the server's local CA hierarchy (roots, subordinates, imported sub-CAs).

A CA's life: ``create`` (or ``import``) → ``drain`` (no new issuance; ``activate`` undoes it) →
``retire``. CA private keys stay on the server; ``import`` reads the key from a local file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from certctl.cli.client import api_path
from certctl.cli.resources.common import Api, UsageError, api_command, given
from certctl.cli.resources.files import read_pem
from certctl.pki.keys import KEY_SPECS

app = typer.Typer(
    help="The local CA hierarchy: roots and intermediates of this server.", no_args_is_help=True
)

Ref = Annotated[str, typer.Argument(help="CA id or name.", show_default=False)]


@app.command("list")
@api_command
def list_cas(api: Api) -> None:
    """List the CAs, oldest first."""
    api.show(api.client.get(api_path("intermediates")), kind="ca")


@app.command("get")
@api_command
def get_ca(api: Api, ref: Ref) -> None:
    """Show one CA."""
    api.show(api.client.get(api_path("intermediates", ref)))


@app.command("create")
@api_command
def create_ca(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique CA name.", show_default=False)],
    cn: Annotated[str, typer.Option("--cn", help="Subject common name.", show_default=False)],
    parent: Annotated[str | None, typer.Option(help="Parent CA id or name; omit for a root.")] = None,
    key_type: Annotated[str, typer.Option(help=f"One of {', '.join(KEY_SPECS)}.")] = "ecdsa-p256",
    validity_days: Annotated[int, typer.Option(min=1, help="Lifetime of the CA certificate.")] = 3650,
    path_length: Annotated[int | None, typer.Option(min=0, help="Max CAs below this one.")] = None,
    organization: Annotated[str | None, typer.Option("--org", help="Subject organisation.")] = None,
    country: Annotated[str | None, typer.Option(help="Subject country (two letters).")] = None,
    permit_dns: Annotated[
        list[str] | None, typer.Option("--permit-dns", help="Permitted DNS subtree.")
    ] = None,
    exclude_dns: Annotated[
        list[str] | None, typer.Option("--exclude-dns", help="Excluded DNS subtree.")
    ] = None,
    permit_ip: Annotated[
        list[str] | None, typer.Option("--permit-ip", help="Permitted IP range (CIDR).")
    ] = None,
    exclude_ip: Annotated[
        list[str] | None, typer.Option("--exclude-ip", help="Excluded IP range (CIDR).")
    ] = None,
) -> None:
    """Create a root (no --parent) or a subordinate CA, with optional name constraints."""
    if key_type not in KEY_SPECS:
        raise UsageError(f"--key-type {key_type!r} is not one of {', '.join(KEY_SPECS)}")
    subject: dict[str, Any] = {"common_name": cn}
    if organization:
        subject["organization"] = organization
    if country:
        subject["country"] = country
    body: dict[str, Any] = {
        "name": name,
        "parent": parent,
        "subject": subject,
        "key_type": key_type,
        "validity_days": validity_days,
        "path_length": path_length,
        "name_constraints": {
            "permitted_dns": permit_dns or [],
            "excluded_dns": exclude_dns or [],
            "permitted_ip": permit_ip or [],
            "excluded_ip": exclude_ip or [],
        },
    }
    api.show(api.client.post(api_path("intermediates"), body))


@app.command("import")
@api_command
def import_ca(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique CA name.", show_default=False)],
    cert: Annotated[Path, typer.Option("--cert", help="PEM CA certificate.", show_default=False)],
    key: Annotated[
        Path | None, typer.Option("--key", help="Its PEM private key, to issue from it.", show_default=False)
    ] = None,
    parent: Annotated[str | None, typer.Option(help="Parent CA id or name, if it is known here.")] = None,
) -> None:
    """Import an existing CA certificate (with its key, to sign with it)."""
    body: dict[str, Any] = {"name": name, "certificate": read_pem(cert, "certificate", "CERTIFICATE")}
    if key is not None:
        body["private_key"] = read_pem(key, "private key", "PRIVATE KEY")
    body.update(given(parent=parent))
    api.show(api.client.post(api_path("intermediates", "import"), body))


@app.command("drain")
@api_command
def drain_ca(api: Api, ref: Ref) -> None:
    """Stop new issuance from a CA; what it issued stays valid."""
    api.show(api.client.post(api_path("intermediates", ref, "drain")))


@app.command("activate")
@api_command
def activate_ca(api: Api, ref: Ref) -> None:
    """Undo a drain."""
    api.show(api.client.post(api_path("intermediates", ref, "activate")))


@app.command("retire")
@api_command
def retire_ca(api: Api, ref: Ref) -> None:
    """Retire a drained CA for good."""
    api.show(api.client.post(api_path("intermediates", ref, "retire")))
