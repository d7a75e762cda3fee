"""``certctl agent``: enrol this host, then run the agent (in the foreground, under systemd, or once)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from certctl.agent.state import DEFAULT_STATE_DIR, AgentStateError, Enrolment, StateDir

if TYPE_CHECKING:
    pass

app = typer.Typer(help="Run the agent that deploys certificates on this host.", no_args_is_help=True)

STATE_DIR = typer.Option(
    DEFAULT_STATE_DIR, "--state-dir", envvar="CERTCTL_AGENT_STATE_DIR", help="Agent state directory (0700)"
)


def _fail(message: str) -> typer.Exit:
    sys.stderr.write(f"error: {message}\n")
    return typer.Exit(1)


@app.command("enrol")
def enrol(
    server: str = typer.Option(..., envvar="CERTCTL_SERVER", help="Server URL, e.g. https://certctl:8443"),
    token_file: Path = typer.Option(
        None, "--token-file", help="File holding the one-time enrolment token (else CERTCTL_ENROLMENT_TOKEN)"
    ),
    ca_bundle: Path = typer.Option(
        None, "--ca-bundle", envvar="CERTCTL_CA_BUNDLE", help="CA to trust for the server"
    ),
    state_dir: Path = STATE_DIR,
) -> None:
    """Spend an enrolment token; the agent's credential is stored in the state directory (0600)."""
    from certctl.agent import api as agent_api
    from certctl.agent.api import ServerError
    from certctl.agent.runner import host_facts

    token = os.environ.get("CERTCTL_ENROLMENT_TOKEN", "")
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise _fail(f"cannot read {token_file}: {exc.strerror}") from None
    if not token:
        raise _fail("give the enrolment token with --token-file or CERTCTL_ENROLMENT_TOKEN")
    if not server.startswith("https://"):
        raise _fail("the server URL must start with https://")
    ca_pem = None
    if ca_bundle is not None:
        try:
            ca_pem = ca_bundle.read_bytes()
        except OSError as exc:
            raise _fail(f"cannot read {ca_bundle}: {exc.strerror}") from None
    state = StateDir(state_dir)
    try:
        body = asyncio.run(
            agent_api.enrol(
                server=server,
                token=token,
                ca_bundle=str(ca_bundle) if ca_bundle else None,
                facts=host_facts(),
            )
        )
        state.save(
            Enrolment(server=server, agent_id=body["id"], name=body["name"], credential=body["credential"]),
            ca_bundle_pem=ca_pem,
        )
    except (ServerError, OSError) as exc:
        raise _fail(f"enrolment failed: {exc}") from None
    typer.echo(f"enrolled as agent {body['name']} ({body['id']}); state in {state_dir}")


@app.command("run")
def run(
    state_dir: Path = STATE_DIR,
    once: bool = typer.Option(False, "--once", help="One heartbeat and one work cycle, then exit"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be deployed; change nothing"),
    poll_seconds: float = typer.Option(30.0, "--poll-seconds", min=1.0, max=3600.0),
    heartbeat_seconds: float = typer.Option(60.0, "--heartbeat-seconds", min=5.0, max=3600.0),
) -> None:
    """Poll the server and deploy what it asks. With --once the exit code is 1 if any deployment failed."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = StateDir(state_dir)
    try:
        enrolment = state.load()
    except AgentStateError as exc:
        raise _fail(str(exc)) from None
    code = asyncio.run(_run(state, enrolment, once, dry_run, poll_seconds, heartbeat_seconds))
    raise typer.Exit(code)


async def _run(
    state: StateDir,
    enrolment: Enrolment,
    once: bool,
    dry_run: bool,
    poll_seconds: float,
    heartbeat_seconds: float,
) -> int:
    from certctl.agent.api import AgentApi, AgentRetired, ServerError
    from certctl.agent.runner import AgentRunner

    client = AgentApi(enrolment)
    runner = AgentRunner(state, client, dry_run=dry_run)
    try:
        if not once:
            return await runner.run_forever(poll_seconds=poll_seconds, heartbeat_seconds=heartbeat_seconds)
        try:
            await runner.heartbeat()
            report = await runner.cycle()
        except AgentRetired:
            sys.stderr.write("this agent was retired on the server; exiting\n")
            state.forget_credential()
            return 0
        except ServerError as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 1
        for line in report.lines:
            typer.echo(line)
        return 0 if report.ok else 1
    finally:
        await client.close()


@app.command("rotate-credential")
def rotate_credential(state_dir: Path = STATE_DIR) -> None:
    """Get a new credential from the server and store it (the old one works ten more minutes)."""
    state = StateDir(state_dir)
    try:
        enrolment = state.load()
    except AgentStateError as exc:
        raise _fail(str(exc)) from None

    from certctl.agent.api import AgentApi, ServerError

    async def rotate() -> str:
        client = AgentApi(enrolment)
        try:
            return await client.rotate()
        finally:
            await client.close()

    try:
        credential = asyncio.run(rotate())
    except ServerError as exc:
        raise _fail(f"rotation failed: {exc}") from None
    state.save(
        Enrolment(
            server=enrolment.server,
            agent_id=enrolment.agent_id,
            name=enrolment.name,
            credential=credential,
            ca_bundle=enrolment.ca_bundle,
        )
    )
    typer.echo("credential rotated")


@app.command("status")
def status(state_dir: Path = STATE_DIR) -> None:
    """Show this host's enrolment (never the credential)."""
    try:
        enrolment = StateDir(state_dir).load()
    except AgentStateError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"agent {enrolment.name} ({enrolment.agent_id}) enrolled with {enrolment.server}")
