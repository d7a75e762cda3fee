"""``certctl notifications``: channels (where messages go), rules (which events go where), deliveries.

Channel secrets (SMTP passwords, webhook URLs with tokens, HMAC secrets, routing keys) are read from
files with ``--secret-file KEY=PATH`` so they never appear in shell history or process lists; the
server never shows them again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from certctl.cli.client import api_path
from certctl.cli.output import note
from certctl.cli.resources.common import Api, api_command, parse_pairs
from certctl.cli.resources.files import read_text

app = typer.Typer(help="Notifications: channels, routing rules and deliveries.", no_args_is_help=True)
channels = typer.Typer(
    help="Channels: email, Slack, Teams, PagerDuty, OpsGenie, webhook.", no_args_is_help=True
)
rules = typer.Typer(
    help="Routing rules: which events (and severities) go to which channels.", no_args_is_help=True
)
deliveries = typer.Typer(help="Deliveries: one per event and channel; retried, then dead-lettered.")
app.add_typer(channels, name="channels")
app.add_typer(rules, name="rules")
app.add_typer(deliveries, name="deliveries")

Ref = Annotated[str, typer.Argument(help="Id or name.", show_default=False)]
Options = Annotated[list[str] | None, typer.Option("--option", help="Channel option key=value; repeatable.")]
SecretFiles = Annotated[
    list[str] | None, typer.Option("--secret-file", help="Secret KEY=PATH read from a file; repeatable.")
]


def _secrets(values: list[str] | None) -> dict[str, str]:
    return {
        k: read_text(Path(v), f"secret {k}").strip()
        for k, v in parse_pairs(values or [], "--secret-file").items()
    }


@channels.command("types")
@api_command
def channel_types(api: Api) -> None:
    """The channel types with the options and secrets each takes."""
    api.show(api.client.get(api_path("notifications", "types")))


@channels.command("list")
@api_command
def list_channels(api: Api) -> None:
    """List channels (secrets are never shown, only which are set)."""
    api.show(api.client.get(api_path("notifications", "channels")))


@channels.command("create")
@api_command
def create_channel(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique channel name.", show_default=False)],
    channel_type: Annotated[
        str, typer.Option("--type", help="email, slack, teams, pagerduty, opsgenie, webhook.")
    ],
    option: Options = None,
    secret_file: SecretFiles = None,
) -> None:
    """Create a channel, e.g. --type webhook --option url=https://... --secret-file hmac_secret=./hmac."""
    body = {"name": name, "type": channel_type, "options": parse_pairs(option or [], "--option"),
            "secrets": _secrets(secret_file)}  # fmt: skip
    api.show(api.client.post(api_path("notifications", "channels"), body))


@channels.command("test")
@api_command
def test_channel(api: Api, ref: Ref) -> None:
    """Send a test message through a channel now."""
    api.show(api.client.post(api_path("notifications", "channels", ref, "test")))


@channels.command("delete")
@api_command
def delete_channel(api: Api, ref: Ref) -> None:
    """Delete a channel."""
    api.client.delete(api_path("notifications", "channels", ref))
    note(f"deleted channel {ref}")


@rules.command("list")
@api_command
def list_rules(api: Api) -> None:
    """List routing rules."""
    api.show(api.client.get(api_path("notifications", "rules")))


@rules.command("create")
@api_command
def create_rule(
    api: Api,
    name: Annotated[str, typer.Option(help="Unique rule name.", show_default=False)],
    channel: Annotated[
        list[str], typer.Option("--channel", help="Channel id; repeatable.", show_default=False)
    ],
    event: Annotated[
        list[str] | None, typer.Option("--event", help="Event type; repeatable (none: all).")
    ] = None,
    min_severity: Annotated[str, typer.Option(help="info, warning or critical.")] = "info",
) -> None:
    """Route events (of at least a severity) to channels."""
    body = {"name": name, "channel_ids": list(channel), "event_types": list(event or []),
            "min_severity": min_severity}  # fmt: skip
    api.show(api.client.post(api_path("notifications", "rules"), body))


@rules.command("delete")
@api_command
def delete_rule(api: Api, ref: Ref) -> None:
    """Delete a routing rule."""
    api.client.delete(api_path("notifications", "rules", ref))
    note(f"deleted rule {ref}")


@deliveries.command("list")
@api_command
def list_deliveries(
    api: Api, status: Annotated[str | None, typer.Option(help="pending, running, succeeded, failed.")] = None
) -> None:
    """List deliveries, newest first (failed ones are the dead letters)."""
    params = {"status": status} if status else None
    api.show(api.client.get(api_path("notifications", "deliveries"), params=params), kind="job")


@deliveries.command("requeue")
@api_command
def requeue_delivery(
    api: Api, job_id: Annotated[str, typer.Argument(help="Delivery id.", show_default=False)]
) -> None:
    """Send a dead-lettered delivery again."""
    api.show(api.client.post(api_path("notifications", "deliveries", job_id, "requeue")))
