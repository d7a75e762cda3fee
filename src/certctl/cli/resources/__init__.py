"""Operator commands for the server's resources, spoken over the REST API only.

:func:`register` adds the sub-apps (``certs``, ``issuers``, ``profiles``, ``cas``, ``teams``,
``owners``, ``keys``, ``audit``, ``agents``, ``targets``, ...) and ``whoami`` to the main ``certctl``
app. Nothing here imports the server side (store, services, api): an import-linter contract keeps this
package a pure HTTP client.
"""

from __future__ import annotations

import typer

from certctl.cli.resources import (
    acme,
    agents,
    approvals,
    audit,
    breakglass,
    cas,
    catalog,
    certs,
    deployments,
    identity,
    jobs,
    keys,
    notifications,
    policies,
    profiles,
    revocation,
    roles,
    targets,
)

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach every resource command group to ``app``."""
    revocation.attach(certs.app)
    deployments.attach(certs.app)
    app.add_typer(certs.app, name="certs")
    app.add_typer(catalog.issuers, name="issuers")
    app.add_typer(profiles.app, name="profiles")
    app.add_typer(policies.app, name="policies")
    app.add_typer(cas.app, name="cas")
    app.add_typer(catalog.teams, name="teams")
    app.add_typer(catalog.owners, name="owners")
    app.add_typer(keys.app, name="keys")
    app.add_typer(roles.app, name="roles")
    app.add_typer(jobs.app, name="jobs")
    app.add_typer(notifications.app, name="notifications")
    app.add_typer(approvals.app, name="approvals")
    app.add_typer(audit.app, name="audit")
    app.add_typer(agents.app, name="agents")
    app.add_typer(targets.app, name="targets")
    app.add_typer(acme.app, name="acme")
    app.add_typer(identity.sso, name="sso")
    app.add_typer(identity.sessions, name="sessions")
    app.add_typer(breakglass.app, name="breakglass")
    app.command("whoami")(keys.whoami)
