"""``store.pg_statements``: prebuilt statements sent through libpq, prepared once per hot connection.

Values go in and come out as they did through the driver's cursor (integers of any size through one
statement, NULL or not, booleans without a cast, dates, JSON); errors are the driver's own; statements
prepared on a connection are prepared again after a rollback there (the driver may have dropped them
with its own) and after a session reset behind our back (outside a transaction).
The engine's connections go through the driver's cursor."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    bindparam,
    exc,
    select,
)

from certctl.store import db, pg_statements

T = TypeVar("T")
METADATA = MetaData()
ITEMS = Table(
    "pg_statements_items",
    METADATA,
    Column("id", String(40), primary_key=True),
    Column("size", BigInteger, nullable=True),
    Column("flag", Boolean, nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    Column("doc", JSON, nullable=True),
)
INSERT = db.prebuilt_insert(ITEMS, ["id", "size", "flag", "seen_at", "doc"])
BY_ID = select(ITEMS).where(ITEMS.c.id == bindparam("id"))


def _with_engine(url: str, body: Callable[[Any], Awaitable[T]]) -> T:
    async def scenario() -> T:
        engine = db.make_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(METADATA.create_all)
            return await body(engine)
        finally:
            await db.dispose(engine)

    return asyncio.run(scenario())


def _row(name: str, size: int | None, *, flag: bool = True) -> dict[str, Any]:
    return {
        "id": name,
        "size": size,
        "flag": flag,
        "seen_at": datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
        "doc": {"names": [name], "n": size},
    }


def test_values_round_trip_through_one_prepared_statement(postgres_url: str) -> None:
    sizes = [1, 40_000, 2**40, None, -(2**62)]

    async def body(engine: Any) -> tuple[list[dict[str, Any]], int]:
        found = []
        async with db.hot(engine) as connection:
            for number, size in enumerate(sizes):
                row = _row(f"i{number}", size, flag=size is None)
                assert await db.write_rows(connection, INSERT, [row]) == 1
                found.extend(await db.read_rows(connection, BY_ID, {"id": f"i{number}"}))
            session = connection.statements
            return found, len(session.prepared)

    found, prepared = _with_engine(postgres_url, body)
    assert [row["size"] for row in found] == sizes
    assert [row["flag"] for row in found] == [False, False, False, True, False]
    assert {row["seen_at"] for row in found} == {datetime(2026, 11, 29, 12, 0, tzinfo=UTC)}
    assert found[2]["doc"] == {"names": ["i2"], "n": 2**40}
    # insert with and without a NULL size, and the read: integers of every size share one statement
    assert prepared == 3


def test_errors_are_the_drivers_and_leave_the_connection_usable(postgres_url: str) -> None:
    async def body(engine: Any) -> list[dict[str, Any]]:
        async with db.hot(engine) as connection:
            await db.write_rows(connection, INSERT, [_row("dup", 1)])
            with pytest.raises(exc.IntegrityError) as raised:
                async with db.hot(engine) as other:
                    await db.write_rows(other, INSERT, [_row("dup", 2)])
            assert isinstance(raised.value.orig, psycopg.errors.UniqueViolation)
            assert raised.value.orig.diag.constraint_name == "pg_statements_items_pkey"
            return await db.read_rows(connection, BY_ID, {"id": "dup"})

    (row,) = _with_engine(postgres_url, body)
    assert row["size"] == 1


def test_statements_are_prepared_again_after_a_rollback_or_a_reset(
    postgres_url: str,
) -> None:
    async def on_server(connection: Any) -> int:
        cursor = await connection.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'certctl_%'"
        )
        row = await cursor.fetchone()
        return int(row[0])

    async def body(engine: Any) -> tuple[int, int, int, str]:
        async with db.hot(engine) as connection:
            await db.write_rows(connection, INSERT, [_row("r1", 1)])

            async def rolled_back() -> None:
                async with connection.transaction():
                    await db.write_rows(connection, INSERT, [_row("r2", 2)])
                    raise RuntimeError("roll back")

            with pytest.raises(RuntimeError):
                await rolled_back()
            assert await db.read_rows(connection, BY_ID, {"id": "r2"}) == []
            before = len(connection.statements.prepared)
            kept = await on_server(connection)  # the forgotten insert was closed, not left behind
            await connection.execute("DEALLOCATE ALL")  # a session reset behind our back
            (row,) = await db.read_rows(connection, BY_ID, {"id": "r1"})
            after = len(connection.statements.prepared)
            return before, kept, after, row["id"]

    before, kept, after, found = _with_engine(postgres_url, body)
    assert (before, kept, after, found) == (1, 1, 1, "r1")  # the rollback forgot the insert


def test_dropped_statements_inside_a_transaction_fail_the_statement(postgres_url: str) -> None:
    async def body(engine: Any) -> None:
        async with db.hot(engine) as connection:
            await db.read_rows(connection, BY_ID, {"id": "x"})
            await connection.execute("DEALLOCATE ALL")
            with pytest.raises(psycopg.errors.InvalidSqlStatementName):
                async with connection.transaction():
                    await pg_statements.run(connection, db._compiled(db._PG_DIALECT, BY_ID).sql, ["x"])
            assert await db.read_rows(connection, BY_ID, {"id": "x"}) == []  # prepared again

    _with_engine(postgres_url, body)


def test_a_rolled_back_hot_transaction_has_its_statements_prepared_again(postgres_url: str) -> None:
    async def rolled_back(engine: Any) -> None:
        async with db.hot(engine, transaction=True) as connection:
            for _ in range(6):  # the driver prepares this one itself, so a rollback deallocates all
                await connection.execute("SELECT 1")
            await db.write_rows(connection, INSERT, [_row("t1", 1)])
            raise RuntimeError("roll back")

    async def body(engine: Any) -> list[dict[str, Any]]:
        with pytest.raises(RuntimeError):
            await rolled_back(engine)
        async with db.hot(engine, transaction=True) as connection:
            await db.write_rows(connection, INSERT, [_row("t2", 2)])
            return await db.read_rows(connection, BY_ID, {"id": "t2"})

    (row,) = _with_engine(postgres_url, body)
    assert row["size"] == 2


def test_engine_connections_go_through_the_drivers_cursor(postgres_url: str) -> None:
    async def body(engine: Any) -> tuple[int, str]:
        async with engine.begin() as connection:
            await db.write_rows(connection, INSERT, [_row("e1", 7)])
            (row,) = await db.read_rows(connection, BY_ID, {"id": "e1"})
            driver = await db.driver_of(connection)
            return len(driver.statements.prepared), row["id"]

    assert _with_engine(postgres_url, body) == (0, "e1")
