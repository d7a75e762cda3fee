"""Prebuilt statements sent to PostgreSQL through libpq itself, each prepared once per connection.

The driver's cursor is a general tool: per execution it builds a cursor, looks the query up in its
prepared-statement cache (preparing it after a few runs), adapts each parameter by its Python type, and
walks its result machinery; for the short statements of the request paths that bookkeeping cost a
third of the statement's CPU on the client side, more than the round trip itself. Here a statement (SQL
compiled once per process, see :mod:`certctl.store.db`) is prepared on a connection the first time it
runs there with the parameter types the driver gives the values (integers of any size as ``bigint``,
so one statement serves them all; a parameter that is sometimes NULL gets a second statement), and
executed by name after that; parameters go as text, adapted by the driver's own dumpers, and rows come
back through its own loaders, so values are exactly what the cursor gave.

Only the hot connections (:class:`~certctl.store.hot_connection.HotConnection`, handed out by
:func:`certctl.store.db.hot`) take this path; on the engine's connections the statement goes through the
driver's cursor, which prepares it the driver's way. The driver drops every prepared statement of a
session (``DEALLOCATE ALL``) when a transaction or savepoint rolls back on a connection where it has
prepared some of its own: the hot connection forgets ours on every rollback.

The statement waits through the connection's ``wait`` (the hot connection's, whose socket stays
registered with the event loop). Errors are the driver's (``UniqueViolation`` with its diagnostics,
...). A statement name unknown to the server (the session was reset behind our back) drops what this
connection had prepared; outside a transaction the statement is prepared again and sent once more.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors, generators, pq
from psycopg.adapt import PyFormat, Transformer

from certctl.store.hot_connection import HotConnection

_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)
_BIGINT = 20
_WIDENED = {21: _BIGINT, 23: _BIGINT}  # smallint, integer: the dumper picks by the value's size
_IDLE = pq.TransactionStatus.IDLE


class _Session:
    """What one connection has prepared ((SQL, parameter types) -> statement name) and its value
    adapter. Names are never reused: statements forgotten after a rollback (the driver may or may not
    have deallocated them) are closed by name once the connection is outside a transaction, which is
    no error for a statement that no longer exists."""

    __slots__ = ("encoding", "made", "prepared", "to_close", "transformer")

    def __init__(self, driver: Any) -> None:
        self.prepared: dict[tuple[str, tuple[int, ...]], bytes] = {}
        self.to_close: list[bytes] = []
        self.made = 0
        self.transformer = Transformer(driver)
        self.encoding = driver.info.encoding

    def forget(self) -> None:
        self.to_close += self.prepared.values()
        self.prepared.clear()

    def name(self) -> bytes:
        self.made += 1
        return f"certctl_{self.made}".encode()


def _session(driver: Any) -> _Session:
    session: _Session | None = getattr(driver, "statements", None)
    if session is None:
        session = _Session(driver)
        driver.statements = session
    return session


async def run(driver: Any, sql: str, values: list[Any]) -> Any:
    """Execute ``sql`` with ``values`` on ``driver`` (an async driver connection used by this task
    alone); the result (``PGresult``). Raises the driver's error for a failed statement."""
    if not isinstance(driver, HotConnection):
        cursor = psycopg.AsyncRawCursor(driver)
        await cursor.execute(sql, values)
        return cursor.pgresult
    session = _session(driver)
    try:
        return await _run(driver, session, sql, values)
    except errors.InvalidSqlStatementName:
        session.forget()
        if driver.pgconn.transaction_status != _IDLE:
            raise
        return await _run(driver, session, sql, values)


async def _run(driver: Any, session: _Session, sql: str, values: list[Any]) -> Any:
    pgconn = driver.pgconn
    if session.to_close and pgconn.transaction_status == _IDLE:
        while session.to_close:
            pgconn.send_close_prepared(session.to_close.pop())
            _check(session, await driver.wait(generators.execute(pgconn)))
    transformer = session.transformer
    params = transformer.dump_sequence(values, [PyFormat.TEXT] * len(values))
    types = tuple([_WIDENED.get(oid, oid) for oid in transformer.types or ()])
    name = session.prepared.get((sql, types))
    if name is None:
        name = session.name()
        pgconn.send_prepare(name, sql.encode(), param_types=types)
        _check(session, await driver.wait(generators.execute(pgconn)))
        session.prepared[(sql, types)] = name
    pgconn.send_query_prepared(name, params)
    return _check(session, await driver.wait(generators.execute(pgconn)))


def _check(session: _Session, results: list[Any]) -> Any:
    result = results[-1]
    if result.status not in _OK:
        raise errors.error_from_result(result, encoding=session.encoding)
    return result


def rows(driver: Any, result: Any) -> list[tuple[Any, ...]]:
    """The result's rows as tuples of Python values (the driver's loaders for each column type)."""
    transformer = _session(driver).transformer
    transformer.set_pgresult(result)
    return transformer.load_rows(0, result.ntuples, tuple)


def column_names(result: Any, encoding: str = "utf-8") -> list[str]:
    return [result.fname(index).decode(encoding) for index in range(result.nfields)]


_TIMESTAMPS = frozenset({1114, 1184})  # timestamp, timestamptz


def timestamp_columns(result: Any, encoding: str = "utf-8") -> tuple[str, ...]:
    """The names of the result's timestamp columns."""
    return tuple(
        result.fname(index).decode(encoding)
        for index in range(result.nfields)
        if result.ftype(index) in _TIMESTAMPS
    )
