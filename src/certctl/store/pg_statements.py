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

Only a connection on which the driver prepares nothing itself (``prepare_threshold=None``, as the hot
connections are opened) holds statements prepared here: the driver drops every prepared statement of
the session (``DEALLOCATE ALL``) after a rollback on a connection where it has prepared some. On other
connections the statement goes unnamed, parsed by the server each time.

The statement waits through the connection's ``wait`` (the hot connection's, whose socket stays
registered with the event loop). Errors are the driver's (``UniqueViolation`` with its diagnostics,
...). A statement name unknown to the server (the session was reset behind our back) drops what this
connection had prepared; outside a transaction the statement is prepared again and sent once more.
"""

from __future__ import annotations

from typing import Any

from psycopg import errors, generators, pq
from psycopg.adapt import PyFormat, Transformer

_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)
_BIGINT = 20
_WIDENED = {21: _BIGINT, 23: _BIGINT}  # smallint, integer: the dumper picks by the value's size
_IDLE = pq.TransactionStatus.IDLE


class _Session:
    """What one connection has prepared ((SQL, parameter types) -> statement name) and its value
    adapter."""

    __slots__ = ("encoding", "prepared", "transformer")

    def __init__(self, driver: Any) -> None:
        self.prepared: dict[tuple[str, tuple[int, ...]], bytes] = {}
        self.transformer = Transformer(driver)
        self.encoding = driver.info.encoding


def _session(driver: Any) -> _Session:
    session: _Session | None = getattr(driver, "_certctl_statements", None)
    if session is None:
        session = _Session(driver)
        driver._certctl_statements = session
    return session


async def run(driver: Any, sql: str, values: list[Any]) -> Any:
    """Execute ``sql`` with ``values`` on ``driver`` (an async driver connection used by this task
    alone); the result (``PGresult``). Raises the driver's error for a failed statement."""
    session = _session(driver)
    try:
        return await _run(driver, session, sql, values)
    except errors.InvalidSqlStatementName:
        session.prepared.clear()
        if driver.pgconn.transaction_status != _IDLE:
            raise
        return await _run(driver, session, sql, values)


async def _run(driver: Any, session: _Session, sql: str, values: list[Any]) -> Any:
    pgconn = driver.pgconn
    transformer = session.transformer
    params = transformer.dump_sequence(values, [PyFormat.TEXT] * len(values))
    types = tuple([_WIDENED.get(oid, oid) for oid in transformer.types or ()])
    if driver.prepare_threshold is not None:
        pgconn.send_query_params(sql.encode(), params, param_types=types)
        return _check(session, await driver.wait(generators.execute(pgconn)))
    name = session.prepared.get((sql, types))
    if name is None:
        name = f"certctl_{len(session.prepared)}".encode()
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
