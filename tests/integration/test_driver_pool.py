"""``store.db.hot``: the driver connections of the request paths that run on every request.

On PostgreSQL they come from a small per-process pool in autocommit mode: reused, bounded, pinged after
sitting idle, closed instead of reused when a request left them inside a transaction, closed by
``db.dispose``; errors surface as the engine's own (IntegrityError ...). On SQLite ``hot`` is a
transaction on the engine, and the same statements behave the same."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import exc, func, literal, select, text

from certctl.store import db
from certctl.store.repositories import acme

BACKEND_PID = select(func.pg_backend_pid().label("pid"))
ONE = select(literal(1).label("one"))


def _postgres(url: str) -> bool:
    return "postgresql" in url


async def _pid(connection: Any) -> int:
    (row,) = await db.read_rows(connection, BACKEND_PID, {})
    return int(row["pid"])


def test_hot_connections_are_reused_and_bounded(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "DRIVER_POOL_SIZE", 2)

    async def scenario() -> tuple[set[int], set[int], list[int]]:
        engine = db.make_engine(database_url, pool_size=2)
        try:
            if not _postgres(database_url):
                async with db.hot(engine) as connection:
                    rows = await db.read_rows(connection, ONE, {})
                return set(), set(), [row["one"] for row in rows]

            async def busy() -> int:
                async with db.hot(engine) as connection:
                    pid = await _pid(connection)
                    await asyncio.sleep(0.05)
                    return pid

            concurrent = set(await asyncio.gather(*(busy() for _ in range(6))))
            sequential = set()
            for _ in range(3):
                async with db.hot(engine) as connection:
                    sequential.add(await _pid(connection))
            return concurrent, sequential, []
        finally:
            await db.dispose(engine)

    concurrent, sequential, ones = asyncio.run(scenario())
    if _postgres(database_url):
        assert 1 <= len(concurrent) <= 2  # six users, never more than the pool's two connections
        assert len(sequential) == 1 and sequential <= concurrent  # reused, not reopened
    else:
        assert ones == [1]


def test_a_connection_left_in_a_transaction_is_closed_not_reused(database_url: str) -> None:
    async def scenario() -> tuple[int, int, str]:
        engine = db.make_engine(database_url, pool_size=2)
        try:
            if not _postgres(database_url):
                async with db.hot(engine) as connection:
                    assert connection.in_transaction()  # SQLite: a transaction on the engine
                return 0, 1, "idle"
            async with db.hot(engine) as connection:
                first = await _pid(connection)
                await connection.execute("BEGIN")  # as a request cancelled mid-transaction leaves it
            async with db.hot(engine) as connection:
                second = await _pid(connection)
                status = connection.info.transaction_status.name.lower()
            return first, second, status
        finally:
            await db.dispose(engine)

    first, second, status = asyncio.run(scenario())
    assert first != second
    assert status == "idle"


def test_a_dead_idle_connection_is_replaced(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> tuple[int, int]:
        engine = db.make_engine(database_url, pool_size=2)
        try:
            if not _postgres(database_url):
                async with db.hot(engine) as connection:
                    (row,) = await db.read_rows(connection, ONE, {})
                return 0, int(row["one"])
            async with db.hot(engine) as connection:
                first = await _pid(connection)
            async with engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            await asyncio.sleep(0.2)
            monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)  # the returned connection counts as idle
            async with db.hot(engine) as connection:
                second = await _pid(connection)
            return first, second
        finally:
            await db.dispose(engine)

    first, second = asyncio.run(scenario())
    assert first != second and second > 0


def test_errors_surface_as_the_engine_raises_them(database_url: str) -> None:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    nonce = [("n-duplicate", now)]

    async def scenario() -> type[BaseException]:
        engine = db.make_engine(database_url, pool_size=2)
        try:
            async with db.hot(engine) as connection:
                assert await acme.spend_nonces(connection, nonce) == {"n-duplicate"}
            account = {
                "id": "acct_hot",
                "profile": "default",
                "jwk": {"kty": "EC"},
                "jwk_thumbprint": "thumb-hot",
                "status": "valid",
                "contact": [],
                "created_at": now,
            }
            async with db.unit_of_work(engine) as uow:
                await acme.insert_account(uow.connection, account)
            try:  # the same account again: a unique violation
                async with db.hot(engine, transaction=True) as connection:
                    await db.write_rows(connection, db.prebuilt_insert(acme.ACCOUNTS, account), [account])
            except Exception as error:
                raised = type(error)
            else:
                raise AssertionError("the account was stored twice")
            async with db.hot(engine) as connection:  # the connection is usable again afterwards
                assert await acme.spend_nonces(connection, nonce) == set()
            return raised
        finally:
            await db.dispose(engine)

    assert issubclass(asyncio.run(scenario()), exc.IntegrityError)


def test_dispose_closes_the_driver_connections(database_url: str) -> None:
    async def scenario() -> tuple[int, int]:
        engine = db.make_engine(database_url, pool_size=2)
        if not _postgres(database_url):
            async with db.hot(engine) as connection:
                await db.read_rows(connection, ONE, {})
            await db.dispose(engine)
            return 1, 0
        async with db.hot(engine) as connection:
            pid = await _pid(connection)
        await db.dispose(engine)
        watcher = db.make_engine(database_url, pool_size=1)
        try:
            for _ in range(50):
                async with watcher.connect() as other:
                    alive = (
                        await other.execute(
                            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
                        )
                    ).scalar()
                if not alive:
                    break
                await asyncio.sleep(0.05)
            return pid, int(alive or 0)
        finally:
            await watcher.dispose()

    pid, alive = asyncio.run(scenario())
    assert pid > 0 and alive == 0
