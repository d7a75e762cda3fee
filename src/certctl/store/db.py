"""Engines, migrations and the unit of work.

SQLite (embedded default, WAL mode) and PostgreSQL (production, replicas) are both first-class.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Insert, Select, Update, event, exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from certctl.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
IDLE_PING_SECONDS = 10.0
"""A pooled PostgreSQL connection that sat unused this long is pinged before it is handed out; busy
connections are not (a ping per checkout would cost a round trip per transaction)."""


def async_url(url: str) -> str:
    """Accept the usual spellings and pick the async driver certctl ships with."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ConfigurationError(f"unsupported database {backend!r}: use sqlite or postgresql+psycopg")


def sync_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    full = async_url(url)
    if full.startswith("sqlite"):
        path = make_url(full).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(full, pool_size=pool_size, max_overflow=0)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(full, pool_size=pool_size, max_overflow=10)
    _ping_when_idle(engine.sync_engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling for connections that were idle (a restarted or failed-over
    server, a firewall that dropped the session): such a connection is pinged at checkout and, if the
    ping fails, the pool replaces it before anyone uses it. A connection that breaks while in use fails
    its request once and the pool then drops every connection opened before the failure."""

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _handed_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError("idle database connection is gone") from error
        if not alive:
            raise exc.DisconnectionError("idle database connection is gone")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Upgrade the database to the newest schema (runs on start and from ``certctl admin migrate``)."""
    full = sync_url(url)
    if full.startswith("sqlite:///"):
        Path(make_url(full).database or ".").parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")


class UnitOfWork:
    """One transaction. Repositories receive its connection; only the unit of work commits."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection


@asynccontextmanager
async def unit_of_work(engine: AsyncEngine) -> AsyncIterator[UnitOfWork]:
    async with engine.begin() as connection:
        yield UnitOfWork(connection)


@asynccontextmanager
async def read_only(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """Reads in a transaction (which server-side cursors need); hot paths use ``autocommit_reads``."""
    async with engine.connect() as connection:
        yield connection


@asynccontextmanager
async def one_statement(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for writes that are atomic on their own: on PostgreSQL one statement with no
    BEGIN/COMMIT round trips around it; on SQLite (where the driver needs a transaction for a write,
    and a transaction costs no round trip) a transaction committed at the end."""
    if engine.dialect.name == "sqlite":
        async with engine.begin() as connection:
            yield connection
    else:
        async with autocommit_reads(engine) as connection:
            yield connection


@asynccontextmanager
async def autocommit_reads(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection on which each statement runs on its own, with no BEGIN and ROLLBACK round trips: for
    hot paths that only read and need no snapshot shared by several statements."""
    async with engine.connect() as connection:
        if engine.dialect.name != "sqlite":  # the SQLite driver sends no BEGIN before a read anyway, and
            # switching its isolation level per checkout costs more than it saves
            await connection.execution_options(isolation_level="AUTOCOMMIT")
        yield connection


Prebuilt = Select[Any] | Insert | Update
"""A module-level statement with named bind parameters, run through :func:`read_rows` or
:func:`write_rows`."""


@dataclass(frozen=True)
class _Compiled:
    statement: Prebuilt
    sql: str
    constants: dict[str, Any]
    processors: dict[str, Callable[[Any], Any]]


_COMPILED: dict[int, _Compiled] = {}


def _compiled(connection: AsyncConnection, statement: Prebuilt) -> _Compiled:
    """The statement as the driver takes it (compiled once per process): SQL text, the values of its
    constants, and the type conversions of its parameters (JSON, dates) that the general path applies."""
    found = _COMPILED.get(id(statement))
    if found is None or found.statement is not statement:
        dialect = connection.dialect
        compiled = statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:
            raise ValueError("prebuilt statements take no expanding parameters")
        processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        constants = {
            name: processors[name](value) if name in processors else value
            for name, value in compiled.params.items()
        }
        found = _Compiled(statement, compiled.string, constants, processors)
        _COMPILED[id(statement)] = found
    return found


def _bound(compiled: _Compiled, parameters: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(compiled.constants)
    for name, value in parameters.items():
        processor = compiled.processors.get(name)
        values[name] = processor(value) if processor is not None else value
    return values


async def _driver(connection: AsyncConnection) -> Any:
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


async def read_rows(
    connection: AsyncConnection, statement: Prebuilt, parameters: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The rows of a prebuilt statement (a read, or a write with RETURNING) as dicts.

    On PostgreSQL the statement is compiled once per process and sent through the driver, skipping the
    general execution path (its cost per statement is several times the driver's on the request paths
    that run on every request); parameters are converted as their column types say, and datetimes come
    back in UTC as the column type returns them. On SQLite the statement runs the usual way."""
    if connection.dialect.name != "postgresql":
        return [dict(row) for row in (await connection.execute(statement, dict(parameters))).mappings()]
    compiled = _compiled(connection, statement)
    cursor = await (await _driver(connection)).execute(compiled.sql, _bound(compiled, parameters))
    names = [column.name for column in cursor.description or ()]
    return [dict(zip(names, map(_utc, row), strict=True)) for row in await cursor.fetchall()]


async def write_rows(
    connection: AsyncConnection, statement: Insert | Update, parameters: Sequence[Mapping[str, Any]]
) -> int:
    """Run a prebuilt write once per parameter set (as :func:`read_rows` does on each engine); the
    number of rows it changed."""
    if not parameters:
        return 0
    if connection.dialect.name != "postgresql":
        many = [dict(values) for values in parameters]
        result = await connection.execute(statement, many if len(many) > 1 else many[0])
        return int(result.rowcount or 0)
    compiled = _compiled(connection, statement)
    cursor = (await _driver(connection)).cursor()
    try:
        if len(parameters) == 1:
            await cursor.execute(compiled.sql, _bound(compiled, parameters[0]))
        else:
            await cursor.executemany(compiled.sql, [_bound(compiled, values) for values in parameters])
        return int(cursor.rowcount or 0)
    finally:
        await cursor.close()


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value
