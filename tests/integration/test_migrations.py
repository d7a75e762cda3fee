"""Models and migrations agree, on every engine (a model change without a migration fails here)."""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from certctl.store.db import alembic_config, sync_url
from certctl.store.models import Base


def test_models_match_migrations(database_url: str) -> None:
    engine = create_engine(sync_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_key_roles_become_global_grants_on_upgrade(tmp_path: Path) -> None:
    """The RBAC migration turns each role an API key held into a global grant, then drops the column."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "2026_11_28_initial")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO api_keys (id, name, prefix, secret_sha256, roles, created_by, created_at) "
                    "VALUES ('key_old', 'old', 'cctl_x', :digest, :roles, 'someone', '2026-11-01 00:00:00')"
                ),
                {"digest": "0" * 64, "roles": json.dumps(["operator", "auditor"])},
            )
        command.upgrade(alembic_config(url), "head")
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT role, scope_type, principal_id FROM role_grants ORDER BY role")
            ).all()
            columns = [c["name"] for c in inspect(connection).get_columns("api_keys")]
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("auditor", "global", "key_old"), ("operator", "global", "key_old")]
    assert "roles" not in columns
