"""``certctl certs revoke`` and ``certctl certs bulk-revoke``: revocation over the REST API.

Bulk revocation runs in rounds (a page of ids, or up to ``--batch`` matches of a filter per request) and
prints a progress line on stderr after each, so a long run shows it is moving. The server skips
certificates that are already revoked, so re-running an interrupted command resumes it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from certctl.cli.client import api_path
from certctl.cli.output import note
from certctl.cli.resources.common import Api, UsageError, api_command

__all__ = ["attach"]

IDS_PER_REQUEST = 500


class Reason(StrEnum):
    """RFC 5280 §5.3.1 reasons (certificateHold and removeFromCRL are not offered: revocation is final)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"
    AA_COMPROMISE = "aACompromise"


ReasonOption = Annotated[Reason, typer.Option("--reason", help="RFC 5280 §5.3.1 revocation reason.")]
InvalidityOption = Annotated[
    str | None,
    typer.Option(
        "--invalidity-date",
        help="When the key was (suspected) compromised, RFC 3339 with a zone, e.g. 2026-11-01T00:00:00Z "
        "(RFC 5280 §5.3.2).",
        show_default=False,
    ),
]


@dataclass
class Totals:
    revoked: int = 0
    already_revoked: int = 0
    skipped: int = 0
    not_found: list[str] = field(default_factory=list)
    crls_published: set[str] = field(default_factory=set)

    def add(self, answer: dict[str, Any]) -> None:
        self.revoked += int(answer.get("revoked", 0))
        self.already_revoked += int(answer.get("already_revoked", 0))
        self.skipped += int(answer.get("skipped", 0))
        self.not_found += list(answer.get("not_found") or [])
        self.crls_published |= set(answer.get("crls_published") or [])

    def progress(self, prefix: str = "") -> None:
        note(
            f"{prefix}revoked {self.revoked}, already revoked {self.already_revoked}, "
            f"skipped {self.skipped}, not found {len(self.not_found)}"
        )

    def summary(self) -> dict[str, Any]:
        return asdict(self) | {"crls_published": sorted(self.crls_published)}


def _reason_body(reason: Reason, invalidity_date: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"reason": reason.value}
    if invalidity_date is not None:
        try:
            moment = datetime.fromisoformat(invalidity_date)
        except ValueError:
            raise UsageError(
                f"--invalidity-date {invalidity_date!r} is not an RFC 3339 date and time"
            ) from None
        if moment.tzinfo is None:
            raise UsageError("--invalidity-date needs a time zone, e.g. 2026-11-01T00:00:00Z")
        body["invalidity_date"] = moment.isoformat()
    return body


@api_command
def revoke(
    api: Api,
    ref: Annotated[str, typer.Argument(help="Certificate id or name.", show_default=False)],
    reason: ReasonOption = Reason.UNSPECIFIED,
    invalidity_date: InvalidityOption = None,
) -> None:
    """Revoke a certificate's current version; its CA publishes a new CRL at once."""
    api.show(api.client.post(api_path("certificates", ref, "revoke"), _reason_body(reason, invalidity_date)))


@api_command
def bulk_revoke(
    api: Api,
    ids: Annotated[list[str] | None, typer.Option("--id", help="Certificate id or name; repeatable.")] = None,
    issuer: Annotated[str | None, typer.Option(help="Every certificate of this issuer.")] = None,
    profile: Annotated[str | None, typer.Option(help="Every certificate of this profile.")] = None,
    owner: Annotated[str | None, typer.Option(help="Every certificate of this owner.")] = None,
    team: Annotated[str | None, typer.Option(help="Every certificate of this team.")] = None,
    source: Annotated[
        str | None, typer.Option(help="Every certificate from this source (api, acme, ...).")
    ] = None,
    reason: ReasonOption = Reason.UNSPECIFIED,
    invalidity_date: InvalidityOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: revocation cannot be undone.")] = False,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="Matches per request.")] = 1000,
) -> None:
    """Revoke many certificates: listed with --id, or all you may revoke that match the filters."""
    selection = {"issuer": issuer, "profile": profile, "owner": owner, "team": team, "source": source}
    chosen = {key: value for key, value in selection.items() if value is not None}
    if bool(ids) == bool(chosen):
        raise UsageError(
            "give --id (repeatable) or filters (--issuer/--profile/--owner/--team/--source), not both"
        )
    if not yes:
        raise UsageError("revocation cannot be undone; add --yes to go ahead")
    body = _reason_body(reason, invalidity_date)
    totals = Totals()
    if ids:
        for start in range(0, len(ids), IDS_PER_REQUEST):
            chunk = ids[start : start + IDS_PER_REQUEST]
            totals.add(api.client.post(api_path("certificates", "revoke"), body | {"ids": chunk}))
            totals.progress(f"{min(start + IDS_PER_REQUEST, len(ids))}/{len(ids)} ids: ")
    else:
        cursor: str | None = None
        while True:
            request = body | {"filter": chosen, "limit": batch} | ({"cursor": cursor} if cursor else {})
            answer = api.client.post(api_path("certificates", "revoke"), request)
            totals.add(answer)
            totals.progress()
            cursor = answer.get("next_cursor")
            if not cursor:
                break
    api.show(totals.summary())


def attach(certs: typer.Typer) -> None:
    """Add ``revoke`` and ``bulk-revoke`` to the ``certctl certs`` group."""
    certs.command("revoke")(revoke)
    certs.command("bulk-revoke")(bulk_revoke)
