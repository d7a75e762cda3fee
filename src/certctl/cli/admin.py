"""``certctl admin``: offline commands that act on the database directly (shell access = trust)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from certctl.cli.errors import fail
from certctl.errors import CertctlError

if TYPE_CHECKING:
    from certctl.keys.envelope import MasterKey
    from certctl.settings import Settings
    from certctl.store.repositories.audit import VerifyReport

app = typer.Typer(
    help="Offline administration against the database (no server needed).", no_args_is_help=True
)
audit_app = typer.Typer(help="The audit trail's hash chain.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

DataDir = typer.Option(None, "--data-dir", envvar="CERTCTL_DATA_DIR", help="Data directory [./certctl-data]")
DatabaseUrl = typer.Option(None, "--database-url", envvar="CERTCTL_DATABASE_URL", help="Database URL")


def _settings(data_dir: Path | None, database_url: str | None) -> Settings:
    from certctl.settings import Settings

    settings = Settings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    if database_url is not None:
        settings = settings.model_copy(update={"database_url": database_url})
    return settings


def _url(data_dir: Path | None, database_url: str | None, *, must_exist: bool = True) -> str:
    settings = _settings(data_dir, database_url)
    if must_exist and settings.database_url is None and not (settings.data_dir / "certctl.db").exists():
        raise fail(f"no database in {settings.data_dir}; start the server once or pass --database-url")
    return settings.resolved_database_url


@app.command("migrate")
def migrate_command(data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """Upgrade the database schema to the newest version."""
    from certctl.store.db import migrate

    settings = _settings(data_dir, database_url)
    try:
        migrate(settings.resolved_database_url)
    except Exception as exc:
        raise fail(f"migration failed: {type(exc).__name__}: {exc}") from None
    typer.echo("database is at the newest schema", err=True)


@app.command("create-key")
def create_key(
    name: str = typer.Option(..., "--name", help="A name for the key"),
    role: list[str] = typer.Option(..., "--role", help="Role(s): admin, operator, viewer, auditor"),
    expires_in_days: int = typer.Option(None, "--expires-in-days", min=1),
    data_dir: Path = DataDir,
    database_url: str = DatabaseUrl,
) -> None:
    """Create an API key offline and print only the key on stdout."""
    url = _url(data_dir, database_url, must_exist=False)
    try:
        secret = asyncio.run(_create_key(url, name, role, expires_in_days))
    except CertctlError as exc:
        raise fail(exc.message) from None
    typer.echo(secret)


async def _create_key(url: str, name: str, roles: list[str], expires_in_days: int | None) -> str:
    from datetime import timedelta

    from certctl.domain.rbac import global_access
    from certctl.services.api_keys import ApiKeyService
    from certctl.services.audit import Actor
    from certctl.services.context import ServiceContext
    from certctl.store.db import make_engine, migrate

    migrate(url)
    engine = make_engine(url, pool_size=1)
    try:
        context = ServiceContext(engine=engine, master_key=_no_master_key(), public_http_url="")
        # Shell access to the database is the credential: the offline admin may grant any role.
        actor = Actor(id="admin-cli", name="certctl admin", type="cli", access=global_access(["admin"]))
        expires = timedelta(days=expires_in_days) if expires_in_days else None
        new = await ApiKeyService(context).create(name=name, roles=roles, expires_in=expires, actor=actor)
        return new.secret
    finally:
        await engine.dispose()


def _no_master_key() -> MasterKey:
    """Key management never touches sealed secrets; a throwaway key keeps the context honest."""
    import secrets

    from certctl.keys.envelope import MasterKey

    return MasterKey(secrets.token_bytes(32))


@audit_app.command("verify")
def audit_verify(data_dir: Path = DataDir, database_url: str = DatabaseUrl) -> None:
    """Seal pending rows, then recompute every hash and the whole chain. Exit 1 on any mismatch."""
    url = _url(data_dir, database_url)
    report = asyncio.run(_verify(url))
    typer.echo(f"sealed events: {report.sealed}, unsealed: {report.unsealed}")
    if not report.ok:
        for problem in report.problems:
            typer.echo(f"TAMPERED: {problem}", err=True)
        raise typer.Exit(1)
    typer.echo("audit chain intact")


async def _verify(url: str) -> VerifyReport:
    from certctl.store.db import make_engine, unit_of_work
    from certctl.store.repositories import audit

    engine = make_engine(url, pool_size=1)
    try:
        async with unit_of_work(engine) as uow:
            await audit.seal_pending(uow.connection)
        async with engine.connect() as connection:
            return await audit.verify(connection)
    finally:
        await engine.dispose()
