"""Engines, migrations and the unit of work.

SQLite (embedded default, WAL mode) and PostgreSQL (production, replicas) are both first-class.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Insert, Select, Table, Update, bindparam, event, exc, insert, literal
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from certctl.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
IDLE_PING_SECONDS = 10.0
"""A pooled PostgreSQL connection that sat unused this long is pinged before it is handed out; busy
connections are not (a ping per checkout would cost a round trip per transaction)."""
DRIVER_POOL_SIZE = 8
"""Driver connections per process for the hot paths (:func:`hot`), beside the engine's own pool."""


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


async def dispose(engine: AsyncEngine) -> None:
    """Close the engine's pool and the driver connections of :func:`hot`."""
    pool = _DRIVER_POOLS.pop(engine.sync_engine, None)
    if pool is not None:
        await pool.close()
    await engine.dispose()


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


_SQLITE_WRITERS: dict[tuple[Engine, asyncio.AbstractEventLoop], asyncio.Lock] = {}
_WRITING: ContextVar[bool] = ContextVar("certctl_sqlite_writing", default=False)


@asynccontextmanager
async def begin(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction on the engine. On SQLite the process's transactions take turns (one lock per
    engine and event loop; a task already inside one does not wait again): SQLite lets one connection
    write at a time, and a connection that finds the database locked polls for it with sleeps of 1 to
    100 ms, so contending writers waited far longer than their turn."""
    if engine.dialect.name != "sqlite" or _WRITING.get():
        async with engine.begin() as connection:
            yield connection
        return
    key = (engine.sync_engine, asyncio.get_running_loop())
    lock = _SQLITE_WRITERS.get(key)
    if lock is None:
        if len(_SQLITE_WRITERS) > 64:  # engines and loops of tests come and go
            _SQLITE_WRITERS.clear()
        lock = _SQLITE_WRITERS[key] = asyncio.Lock()
    async with lock:
        token = _WRITING.set(True)
        try:
            async with engine.begin() as connection:
                yield connection
        finally:
            _WRITING.reset(token)


@asynccontextmanager
async def unit_of_work(engine: AsyncEngine) -> AsyncIterator[UnitOfWork]:
    async with begin(engine) as connection:
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
        async with begin(engine) as connection:
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


_INSERTS: dict[tuple[str, frozenset[str]], Insert] = {}


def prebuilt_insert(table: Table, keys: Iterable[str]) -> Insert:
    """An insert of ``table`` with a bind parameter per given key (built once per table and key set),
    for :func:`write_rows`. A column not given takes its scalar Python default, as the general path
    would give it."""
    given = frozenset(keys)
    found = _INSERTS.get((table.name, given))
    if found is None:
        found = _INSERTS[(table.name, given)] = insert(table).values(insert_values(table, given)).inline()
    return found


def insert_values(table: Table, keys: Iterable[str], *, prefix: str = "") -> dict[str, Any]:
    """The values clause of :func:`prebuilt_insert`: a parameter named ``prefix + key`` per given key,
    typed as its column, and the scalar Python default of every other column that has one."""
    given = set(keys)
    values: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if column.name in given:
            values[column.name] = bindparam(prefix + column.name, type_=column.type)
        elif isinstance(default, ScalarElementColumnDefault):
            values[column.name] = literal(default.arg, type_=column.type)
    return values


@dataclass
class _Compiled:
    statement: Prebuilt
    sql: str
    """With positional ``$n`` parameters, so the driver takes it as it is (no parsing per execution)."""
    order: tuple[str, ...]
    """The parameter name of each position."""
    constants: dict[str, Any]
    processors: dict[str, Callable[[Any], Any]]
    names: list[str] | None = None
    """The result's column names, read from the first result (they never change)."""
    times: tuple[str, ...] = ()
    """Those of them that hold timestamps (returned in UTC, see :func:`_utc`)."""
    carrying: dict[str, str] = field(default_factory=dict)
    """The SQL with a rider's insert in front, per rider name (see :class:`Rider`)."""


_PYFORMAT = re.compile(r"%\(([^)]+)\)s|%%")


def _positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``%(name)s`` parameters as ``$n`` (a name used twice keeps its number) and ``%%`` as ``%``."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    return _PYFORMAT.sub(number, sql), tuple(order)


@dataclass
class Rider:
    """A one-row insert that the first prebuilt statement its task sends next carries along, on
    PostgreSQL outside a transaction: ``WITH <name> AS (INSERT ...) <statement>``. The two commit or
    fail together, so a record that must be written before a request's own changes (an ACME nonce
    spent) costs no statement of its own. The insert has no ON CONFLICT clause: a duplicate fails the
    whole statement, changing nothing, and :func:`read_rows` raises ``refused()`` instead of the
    driver's error. Set with :func:`riding`; ``carried`` tells whether a statement took it (if none
    did, the owner writes the record itself)."""

    name: str
    """The CTE's name, also the key of the carrying SQL cached per statement."""
    insert: str
    """``INSERT INTO t (a, b) VALUES ({0}::VARCHAR, {1}::TIMESTAMPTZ)``: ``{n}`` = ``values[n]``."""
    values: tuple[Any, ...]
    constraint: str
    """The unique constraint whose violation means the record exists already."""
    refused: Callable[[], Exception]
    task: asyncio.Task[Any] | None = field(default_factory=asyncio.current_task)
    """Only this task's statements carry it (tasks it starts inherit the context, not the rider)."""
    carried: bool = False


_RIDER: ContextVar[Rider | None] = ContextVar("certctl_statement_rider", default=None)


@contextmanager
def riding(rider: Rider) -> Iterator[Rider]:
    """Offer ``rider`` to the statements this task sends inside the block."""
    token = _RIDER.set(rider)
    try:
        yield rider
    finally:
        _RIDER.reset(token)


def _carrying(compiled: _Compiled, rider: Rider) -> str:
    found = compiled.carrying.get(rider.name)
    if found is None:
        first = len(compiled.order) + 1
        insert = rider.insert.format(*(f"${first + n}" for n in range(len(rider.values))))
        sql = compiled.sql
        if sql.startswith("WITH RECURSIVE "):
            found = f"WITH RECURSIVE {rider.name} AS ({insert}), {sql[len('WITH RECURSIVE ') :]}"
        elif sql.startswith("WITH "):
            found = f"WITH {rider.name} AS ({insert}), {sql[len('WITH ') :]}"
        else:
            found = f"WITH {rider.name} AS ({insert}) {sql}"
        compiled.carrying[rider.name] = found
    return found


async def _execute(driver: Any, compiled: _Compiled, values: list[Any]) -> Any:
    """Run a prebuilt statement on a driver connection (:mod:`certctl.store.pg_statements`), carrying
    this task's :class:`Rider` if it waits for one and the connection is outside a transaction; the
    driver's result."""
    from certctl.store import pg_statements

    rider = _RIDER.get()
    if (
        rider is None
        or rider.carried
        or rider.task is not asyncio.current_task()
        or driver.pgconn.transaction_status != _idle_status()
    ):
        return await pg_statements.run(driver, compiled.sql, values)
    import psycopg

    try:
        result = await pg_statements.run(driver, _carrying(compiled, rider), [*values, *rider.values])
    except psycopg.errors.UniqueViolation as error:
        if error.diag.constraint_name != rider.constraint:
            raise
        rider.carried = True
        raise rider.refused() from None
    rider.carried = True
    return result


def _idle_status() -> Any:
    from psycopg.pq import TransactionStatus

    return TransactionStatus.IDLE


_COMPILED: dict[int, _Compiled] = {}


def _compiled(dialect: Any, statement: Prebuilt) -> _Compiled:
    """The statement as the driver takes it (compiled once per process): SQL text, the values of its
    constants, and the type conversions of its parameters (JSON, dates) that the general path applies."""
    found = _COMPILED.get(id(statement))
    if found is None or found.statement is not statement:
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
        sql, order = _positional(compiled.string)
        found = _Compiled(statement, sql, order, constants, processors)
        _COMPILED[id(statement)] = found
    return found


class DriverPool:
    """Driver connections in autocommit mode, for statements compiled once (:func:`read_rows`,
    :func:`write_rows`) on the request paths that run on every request.

    Checking a connection out of the engine's pool, switching it to autocommit and back, and resetting
    it on return cost more CPU than the statement itself; these connections are opened in autocommit
    mode with the engine's connection arguments (the same type adapters) and handed out as they are,
    their sockets registered with the event loop once (:mod:`certctl.store.hot_connection`).
    A connection that was idle for ``IDLE_PING_SECONDS`` is pinged first; one that comes back broken,
    closed or inside a transaction (a cancelled request) is closed instead of reused."""

    def __init__(self, engine: AsyncEngine, size: int | None = None) -> None:
        import psycopg

        from certctl.store.hot_connection import HotConnection

        self._connect = HotConnection.connect
        self.driver_error = psycopg.Error
        self._idle_status = psycopg.pq.TransactionStatus.IDLE
        sync = engine.sync_engine
        self._args, self._kwargs = sync.dialect.create_connect_args(sync.url)
        self._size = size or DRIVER_POOL_SIZE
        self._idle: list[tuple[Any, float]] = []
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._open = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        global _PG_DIALECT
        _PG_DIALECT = engine.dialect

    async def acquire(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): connections of the old one are left
            self._loop, self._idle, self._waiters, self._open = loop, [], deque(), 0
        while self._idle:
            connection, returned = self._idle.pop()
            if time.monotonic() - returned < IDLE_PING_SECONDS:
                return connection
            try:
                await connection.execute("SELECT 1")
            except Exception:
                await self._discard(connection)
                continue
            return connection
        if self._open >= self._size:
            waiter: asyncio.Future[Any] = loop.create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._give(waiter.result())  # handed over as this request was cancelled: pass it on
                raise
            if handed is not None:
                return handed
        self._open += 1
        try:
            return await self._connect(*self._args, autocommit=True, **self._kwargs)
        except BaseException:
            self._open -= 1
            self._give(None)
            raise

    def spare(self) -> bool:
        """Whether a connection can be had now without waiting (an idle one, or room to open one)."""
        return not self._waiters and (bool(self._idle) or self._open < self._size)

    async def release(self, connection: Any) -> None:
        if (
            self._closed
            or connection.closed
            or connection.broken
            or connection.info.transaction_status != self._idle_status
        ):
            await self._discard(connection)
            self._give(None)  # a waiter may open a new one in its place
            return
        self._give(connection)

    def _give(self, connection: Any | None) -> None:
        """Hand a connection (or, with None, the right to open one) to the first waiter, else keep it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is not None:
            self._idle.append((connection, time.monotonic()))

    async def _discard(self, connection: Any) -> None:
        self._open -= 1
        with contextlib.suppress(Exception):
            await connection.close()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            await self._discard(connection)


_DRIVER_POOLS: weakref.WeakKeyDictionary[Engine, DriverPool] = weakref.WeakKeyDictionary()
"""Per engine (its sync side: an async engine's hash and equality go through proxies, on every request)."""
_PG_DIALECT: Any = None


def spare_hot_connection(engine: AsyncEngine) -> bool:
    """Whether :func:`hot` would hand out a PostgreSQL driver connection now without waiting; False on
    SQLite (one writer at a time)."""
    sync = engine.sync_engine
    if sync.dialect.name != "postgresql":
        return False
    pool = _DRIVER_POOLS.get(sync)
    return pool is None or pool.spare()


@asynccontextmanager
async def hot(engine: AsyncEngine, *, transaction: bool = False) -> AsyncIterator[Any]:
    """A connection for prebuilt statements only (:func:`read_rows`, :func:`write_rows`): on PostgreSQL
    a driver connection in autocommit mode (each statement atomic alone), or in one transaction with
    ``transaction=True``; on SQLite a transaction on the engine, committed at the end."""
    sync = engine.sync_engine
    pool = _DRIVER_POOLS.get(sync)
    if pool is None:
        if sync.dialect.name != "postgresql":
            async with begin(engine) as connection:
                yield connection
            return
        pool = _DRIVER_POOLS[sync] = DriverPool(engine)
    connection = await pool.acquire()
    try:
        if transaction:
            async with connection.transaction():
                yield connection
        else:
            yield connection
    except pool.driver_error as error:  # raised as the engine raises it (IntegrityError, ...)
        raise exc.DBAPIError.instance(None, None, error, pool.driver_error) from error
    finally:
        await pool.release(connection)


def _raw_cursor(driver: Any) -> Any:
    """A cursor that sends the SQL as it is, with positional ``$n`` parameters."""
    import psycopg

    return psycopg.AsyncRawCursor(driver)


def _bound(compiled: _Compiled, parameters: Mapping[str, Any]) -> list[Any]:
    """The values in the statement's parameter order: each given one converted as its column type says,
    the others the statement's own (constants, or None for a parameter not given)."""
    values = []
    for name in compiled.order:
        if name in parameters:
            processor = compiled.processors.get(name)
            value = parameters[name]
            values.append(processor(value) if processor is not None else value)
        else:
            values.append(compiled.constants.get(name))
    return values


async def driver_of(connection: Any) -> Any | None:
    """The PostgreSQL driver connection behind ``connection`` (one of :func:`hot`'s, or the engine's);
    None on SQLite."""
    if not isinstance(connection, AsyncConnection):
        return connection
    if connection.dialect.name != "postgresql":
        return None
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    return driver


def _dialect_of(connection: Any) -> Any:
    return connection.dialect if isinstance(connection, AsyncConnection) else _PG_DIALECT


async def read_rows(
    connection: Any, statement: Prebuilt, parameters: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The rows of a prebuilt statement (a read, or a write with RETURNING) as dicts.

    On PostgreSQL the statement is compiled once per process and sent through the driver, skipping the
    general execution path (its cost per statement is several times the driver's on the request paths
    that run on every request); parameters are converted as their column types say, and datetimes come
    back in UTC as the column type returns them. On SQLite the statement runs the usual way."""
    driver = await driver_of(connection)
    if driver is None:
        return [dict(row) for row in (await connection.execute(statement, dict(parameters))).mappings()]
    from certctl.store import pg_statements

    compiled = _compiled(_dialect_of(connection), statement)
    result = await _execute(driver, compiled, _bound(compiled, parameters))
    names = compiled.names
    if names is None:
        names = compiled.names = pg_statements.column_names(result)
        compiled.times = pg_statements.timestamp_columns(result)
    found = [dict(zip(names, row, strict=True)) for row in pg_statements.rows(driver, result)]
    for name in compiled.times:
        for row in found:
            row[name] = _utc(row[name])
    return found


async def read_rows_many(
    connection: Any, statement: Prebuilt, parameters: Sequence[Mapping[str, Any]]
) -> list[list[dict[str, Any]]]:
    """The rows of a prebuilt statement run once per parameter set, per run: on PostgreSQL all runs sent
    together (the driver's pipeline: one round trip), on SQLite one after another."""
    driver = await driver_of(connection)
    if driver is None or len(parameters) < 2:
        return [await read_rows(connection, statement, values) for values in parameters]
    compiled = _compiled(_dialect_of(connection), statement)
    cursor = _raw_cursor(driver)
    try:
        await cursor.executemany(
            compiled.sql, [_bound(compiled, values) for values in parameters], returning=True
        )
        runs: list[list[dict[str, Any]]] = []
        while True:
            names = [column.name for column in cursor.description or ()]
            rows = await cursor.fetchall()
            runs.append([dict(zip(names, map(_utc, row), strict=True)) for row in rows])
            if not cursor.nextset():
                return runs
    finally:
        await cursor.close()


async def write_rows(
    connection: Any, statement: Insert | Update, parameters: Sequence[Mapping[str, Any]]
) -> int:
    """Run a prebuilt write once per parameter set (as :func:`read_rows` does on each engine); the
    number of rows it changed."""
    if not parameters:
        return 0
    driver = await driver_of(connection)
    if driver is None:
        many = [dict(values) for values in parameters]
        result = await connection.execute(statement, many if len(many) > 1 else many[0])
        return int(result.rowcount or 0)
    compiled = _compiled(_dialect_of(connection), statement)
    if len(parameters) == 1:
        result = await _execute(driver, compiled, _bound(compiled, parameters[0]))
        return int(result.command_tuples or 0)
    cursor = _raw_cursor(driver)
    try:
        await cursor.executemany(compiled.sql, [_bound(compiled, values) for values in parameters])
        return int(cursor.rowcount or 0)
    finally:
        await cursor.close()


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value
