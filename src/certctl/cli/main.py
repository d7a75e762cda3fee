"""``certctl``: the server, offline admin commands, and the operator CLI over the REST API."""

from __future__ import annotations

import sys

import typer

from certctl.cli.errors import run_guarded

app = typer.Typer(
    name="certctl",
    help="The whole TLS certificate lifecycle, self-hosted.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from certctl.agent.cli import app as agent_app
    from certctl.cli import admin, server_cmd

    server_cmd.register(app)
    app.add_typer(admin.app, name="admin")
    app.add_typer(agent_app, name="agent")
    try:
        from certctl.cli.resources import register
    except ImportError:  # resource commands are optional in a stripped install
        return
    register(app)


_register()


def main() -> None:
    run_guarded(app, sys.argv[1:])


if __name__ == "__main__":
    main()
