"""``certctl certs targets|map|unmap|deployments|deploy``: which targets a certificate is deployed to, its
deployment history, and deploying again on demand; and ``certs issue --target`` for a new certificate whose
key the serving agent makes.

A certificate mapped to targets is *agent-keyed*: the agent serving those targets generates every private
key on its host and sends only a CSR. Mapping a certificate to its first target therefore moves key
custody to that agent, which re-issues the certificate with a fresh key; all targets of one certificate
are served by one agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from certctl.cli.client import api_path
from certctl.cli.output import Column, field, note, when
from certctl.cli.resources.agents import show_items
from certctl.cli.resources.common import Api, UsageError, api_command, items_of

__all__ = ["attach", "issue_to_targets"]

Cert = Annotated[str, typer.Argument(help="Certificate id or name.", show_default=False)]
Target = Annotated[str, typer.Argument(help="Target id or name.", show_default=False)]

MAPPED_COLUMNS = (
    field("NAME", "name"),
    field("TYPE", "type"),
    field("AGENT", "agent_id"),
    field("ID", "id"),
)


def _deployment_columns(target_names: Mapping[str, str]) -> tuple[Column, ...]:
    def target(item: Mapping[str, Any]) -> str:
        target_id = str(item.get("target_id"))
        return target_names.get(target_id, target_id)

    def version(item: Mapping[str, Any]) -> str:
        return str(item["version_id"]) if item.get("version_id") else "(new key)"

    return (
        field("CREATED", "created_at", when),
        Column("TARGET", target),
        Column("VERSION", version),
        field("REASON", "reason"),
        field("STATUS", "status"),
        field("MESSAGE", "message"),
        field("FINISHED", "finished_at", when),
        field("ID", "id"),
    )


def _target_names(api: Api, certificate: str) -> dict[str, str]:
    """Names of the targets mapped now (a history row of an unmapped target keeps showing its id)."""
    if api.json:
        return {}
    mapped = items_of(api.client.get(api_path("certificates", certificate, "targets")))
    return {str(item.get("id")): str(item.get("name")) for item in mapped}


@api_command
def mapped_targets(api: Api, certificate: Cert) -> None:
    """List the targets a certificate is deployed to."""
    show_items(api, api.client.get(api_path("certificates", certificate, "targets")), MAPPED_COLUMNS)


@api_command
def map_target(api: Api, certificate: Cert, target: Target) -> None:
    """Deploy a certificate to a target after every issuance and renewal, starting now."""
    answer = api.client.request_json("PUT", api_path("certificates", certificate, "targets", target))
    api.show(answer)
    if isinstance(answer, dict) and not answer.get("version_id"):
        note(f"the agent serving {target} makes a new key at its next poll; {certificate} is issued for it")
    else:
        note(f"the agent serving {target} deploys {certificate} at its next poll")


@api_command
def unmap_target(api: Api, certificate: Cert, target: Target) -> None:
    """Stop deploying a certificate to a target (what is installed there stays)."""
    api.client.delete(api_path("certificates", certificate, "targets", target))
    note(f"unmapped {certificate} from {target}")


@api_command
def deployment_history(
    api: Api,
    certificate: Cert,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many, newest first.")] = 100,
) -> None:
    """Show a certificate's deployments, newest first: target, version, status and the agent's message."""
    answer = api.client.get(api_path("certificates", certificate, "deployments"), params={"limit": limit})
    show_items(api, answer, _deployment_columns(_target_names(api, certificate)))


@api_command
def deploy(
    api: Api,
    certificate: Cert,
    target: Annotated[
        str | None, typer.Option(help="Only this mapped target (id or name).", show_default=False)
    ] = None,
) -> None:
    """Install the current version again on every mapped target (or one) at the agent's next poll."""
    body = {"target": target} if target is not None else None
    answer = api.client.post(api_path("certificates", certificate, "deploy"), body)
    show_items(api, answer, _deployment_columns(_target_names(api, certificate)))


def issue_to_targets(
    api: Api, body: dict[str, Any], *, targets: list[str], key_flags: Mapping[str, object]
) -> None:
    """``certs issue --target``: create a Pending certificate whose key the targets' agent generates.

    ``key_flags`` are the issue options that choose or receive a key (or a lifetime, which the profile
    sets for agent-keyed certificates); none of them may be given with ``--target``."""
    refused = [flag for flag, value in key_flags.items() if value not in (None, False)]
    if refused:
        raise UsageError(f"with --target the agent makes the key: {', '.join(refused)} do not apply")
    answer = api.client.post(api_path("certificates"), body | {"targets": list(targets)})
    api.show(answer)
    note("the agent serving the targets makes the key at its next poll, then deploys the certificate")


def attach(certs: typer.Typer) -> None:
    """Add ``targets``, ``map``, ``unmap``, ``deployments`` and ``deploy`` to the ``certctl certs`` group."""
    certs.command("targets")(mapped_targets)
    certs.command("map")(map_target)
    certs.command("unmap")(unmap_target)
    certs.command("deployments")(deployment_history)
    certs.command("deploy")(deploy)
