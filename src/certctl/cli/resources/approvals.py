"""``certctl approvals``: the four-eyes queue (list, get, approve, reject), and what ``certs issue`` and
``certs renew`` say when the server holds a request for approval instead of doing it.

A held request is not an error: the command prints where the request went and how to follow it up on
stderr, the approval itself on stdout (or the whole answer with ``--output json``), and exits 0.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from certctl.cli.client import api_path
from certctl.cli.output import note, when
from certctl.cli.resources.common import Api, api_command

app = typer.Typer(
    help="Four-eyes approval: requests held until a second person approves or rejects them.",
    no_args_is_help=True,
)

ApprovalId = Annotated[str, typer.Argument(help="Approval id (apr_...).", show_default=False)]
STATUSES = ("pending", "approved", "rejected", "expired", "failed")


def is_held(answer: Any) -> bool:
    """Did the server answer 202 with an approval request instead of the result?"""
    return isinstance(answer, dict) and isinstance(answer.get("approval"), dict)


def show_held(api: Api, answer: dict[str, Any], *, server_key_for: str | None = None) -> None:
    """Tell the operator the request waits for approval and how to follow it up.

    ``server_key_for`` names the certificate whose key the server will generate on approval."""
    approval: dict[str, Any] = answer["approval"]
    approval_id = str(approval.get("id", ""))
    note(f"held for approval: {approval.get('summary', '')}")
    note(f"  a different person must approve it before {when(approval.get('expires_at'))} UTC:")
    note(f"    certctl approvals approve {approval_id}")
    if server_key_for is not None:
        note(
            "  the server generates the private key when the request is approved; fetch it then with "
            f"certctl certs export {server_key_for} --include-key --out FILE"
        )
    api.show(answer if api.json else approval)


@app.command("list")
@api_command
def list_approvals(
    api: Api,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help=f"{', '.join(STATUSES)}; repeatable.", show_default=False),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(help="certificate.issue, certificate.renew, profile.update or profile.delete."),
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Profile id or name.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many requests.")] = 50,
) -> None:
    """List approval requests, newest first."""
    params = {"status": list(status or []), "kind": kind, "profile": profile, "limit": limit}
    api.show(api.client.get(api_path("approvals"), params=params), kind="approval")


@app.command("get")
@api_command
def get_approval(api: Api, approval_id: ApprovalId) -> None:
    """Show one request with what it would do (its payload) and, once decided, its outcome."""
    api.show(api.client.get(api_path("approvals", approval_id)))


@app.command("approve")
@api_command
def approve(
    api: Api,
    approval_id: ApprovalId,
    note_text: Annotated[str, typer.Option("--note", help="Remark kept with the decision.")] = "",
) -> None:
    """Approve a request someone else made; it runs at once, as its requester."""
    decided = api.client.post(api_path("approvals", approval_id, "approve"), {"note": note_text})
    if not api.json:
        note(f"approved {approval_id}: {decided.get('summary', '')}")
    api.show(decided)


@app.command("reject")
@api_command
def reject(
    api: Api,
    approval_id: ApprovalId,
    note_text: Annotated[str, typer.Option("--note", help="Why the request is refused.", show_default=False)],
) -> None:
    """Reject a request (the requester may also withdraw its own this way)."""
    decided = api.client.post(api_path("approvals", approval_id, "reject"), {"note": note_text})
    if not api.json:
        note(f"rejected {approval_id}")
    api.show(decided)
