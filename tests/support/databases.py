"""Test databases: a file per test on SQLite; on PostgreSQL a database per test cloned from a template
that is migrated once per xdist worker."""

from __future__ import annotations

import atexit
import os
import secrets
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from certctl.store.db import migrate

_templates: dict[str, str] = {}


def _admin_conninfo(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _execute(url: str, sql: str) -> None:
    with psycopg.connect(_admin_conninfo(url), autocommit=True) as connection:
        connection.execute(sql)  # type: ignore[arg-type]


def database_url_for(kind: str, tmp_path: Path, pg_url: str | None, *, worker: str) -> str:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'certctl.db'}"
        migrate(url)
        return url
    assert pg_url is not None
    base = make_url(pg_url).set(drivername="postgresql+psycopg")
    if worker not in _templates:
        template = f"certctl_tpl_{worker}_{os.getpid()}"
        _execute(pg_url, f'CREATE DATABASE "{template}"')
        migrate(base.set(database=template).render_as_string(hide_password=False))
        _templates[worker] = template
        atexit.register(_execute, pg_url, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
    template = _templates[worker]
    name = f"certctl_t_{secrets.token_hex(6)}"
    _execute(pg_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return base.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    name = parsed.database
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)
    _execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
