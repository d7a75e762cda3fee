"""``certctl server``: run the control plane."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from certctl.cli.errors import fail
from certctl.errors import CertctlError

if TYPE_CHECKING:
    from certctl.server.runtime import Prepared


def register(app: typer.Typer) -> None:
    @app.command("server")
    def server(
        data_dir: Path = typer.Option(
            None, envvar="CERTCTL_DATA_DIR", help="Data directory [./certctl-data]"
        ),
        database_url: str = typer.Option(None, envvar="CERTCTL_DATABASE_URL", help="SQLAlchemy URL [SQLite]"),
        listen: str = typer.Option(None, envvar="CERTCTL_LISTEN", help="HTTPS address [127.0.0.1:8443]"),
        http_listen: str = typer.Option(
            None, envvar="CERTCTL_HTTP_LISTEN", help="HTTP address [127.0.0.1:8080]"
        ),
        tls_cert_file: Path = typer.Option(None, envvar="CERTCTL_TLS_CERT_FILE"),
        tls_key_file: Path = typer.Option(None, envvar="CERTCTL_TLS_KEY_FILE"),
        demo: bool = typer.Option(False, "--demo", envvar="CERTCTL_DEMO", help="Seed demo data when empty"),
        workers: int = typer.Option(None, envvar="CERTCTL_WORKERS", help="Worker processes [1]"),
    ) -> None:
        """Start the control plane: API, dashboard, HTTP AIA listener."""
        from pydantic import ValidationError

        from certctl.server.runtime import banner, prepare, print_banner, run
        from certctl.settings import Settings

        overrides: dict[str, Any] = {
            "data_dir": data_dir,
            "database_url": database_url,
            "listen": listen,
            "http_listen": http_listen,
            "tls_cert_file": tls_cert_file,
            "tls_key_file": tls_key_file,
            "workers": workers,
        }
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        # The database drivers log statement parameters (hashes, sealed secrets) at DEBUG: never let them.
        for driver in ("aiosqlite", "psycopg", "sqlalchemy.engine"):
            logging.getLogger(driver).setLevel(logging.WARNING)
        try:
            values = {k: v for k, v in overrides.items() if v is not None} | ({"demo": True} if demo else {})
            settings = Settings(**values)
            prepared = prepare(settings)
            key_file = (
                asyncio.run(_first_run(prepared)) if settings.demo else _existing_key_file(settings.data_dir)
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            raise fail(f"invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
        except CertctlError as exc:
            raise fail(exc.message) from None
        print_banner(banner(prepared, admin_key_file=key_file))
        try:
            run(prepared)
        except CertctlError as exc:
            raise fail(exc.message) from None


def _existing_key_file(data_dir: Path) -> Path | None:
    path = data_dir / "admin.key"
    return path if path.exists() else None


async def _first_run(prepared: Prepared) -> Path | None:
    """With --demo: seed the demo inventory; with no admin key yet, write one to <data-dir>/admin.key."""
    from certctl.domain.clock import SystemClock
    from certctl.server.runtime import services_for
    from certctl.services.api_keys import active_admin_count
    from certctl.services.audit import SYSTEM
    from certctl.services.demo import seed_demo
    from certctl.store.db import read_only

    settings = prepared.settings
    services = services_for(settings, prepared.master_key, pool_size=2)
    try:
        now = SystemClock().now()
        await seed_demo(
            engine=services.context.engine,
            master_key=prepared.master_key,
            public_http_url=settings.resolved_public_http_url,
            now=now,
        )
        key_file = settings.data_dir / "admin.key"
        async with read_only(services.context.engine) as connection:
            admins = await active_admin_count(connection, now)
        if admins == 0:
            new = await services.api_keys.create(
                name="demo-admin", roles=["admin"], expires_in=None, actor=SYSTEM
            )
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(new.secret + "\n")
        return key_file if key_file.exists() else None
    finally:
        await services.context.engine.dispose()
