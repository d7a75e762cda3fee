"""``certctl jobs``: the durable background work (renewals and more) and its outcomes."""

from __future__ import annotations

from typing import Annotated

import typer

from certctl.cli.client import api_path
from certctl.cli.resources.common import Api, api_command

app = typer.Typer(help="Background jobs: list, inspect and cancel.", no_args_is_help=True)

JobId = Annotated[str, typer.Argument(help="Job id.", show_default=False)]


@app.command("list")
@api_command
def list_jobs(
    api: Api,
    job_type: Annotated[str | None, typer.Option("--type", help="renewal, issuance, deployment, ...")] = None,
    status: Annotated[str | None, typer.Option(help="pending, running, succeeded, failed, cancelled")] = None,
    certificate: Annotated[str | None, typer.Option(help="Only jobs for this certificate id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 50,
) -> None:
    """List jobs, newest first."""
    params: dict[str, str | int] = {"limit": limit}
    for key, value in (("type", job_type), ("status", status), ("certificate", certificate)):
        if value is not None:
            params[key] = value
    api.show(api.client.get(api_path("jobs"), params=params), kind="job")


@app.command("get")
@api_command
def get_job(api: Api, job_id: JobId) -> None:
    """Show one job with its attempts and last error."""
    api.show(api.client.get(api_path("jobs", job_id)))


@app.command("cancel")
@api_command
def cancel_job(api: Api, job_id: JobId) -> None:
    """Cancel a pending or failed job."""
    api.show(api.client.post(api_path("jobs", job_id, "cancel")))
