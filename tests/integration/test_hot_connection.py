"""``store.hot_connection.HotConnection`` on PostgreSQL: the socket stays registered with the event loop
between statements and is taken off when the connection closes; data that arrives while no statement
waits (a notification) takes it off, and the next statement still reads its answer and the
notification; a cancelled statement takes it off; a wait with a timeout goes the driver's own way."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import psycopg
import pytest

from certctl.store.hot_connection import HotConnection

PG_URL = os.environ.get("CERTCTL_TEST_DATABASE_URL")


@pytest.fixture
def conninfo() -> str:
    if not PG_URL:
        if os.environ.get("CERTCTL_REQUIRE_PEERS") == "1":
            pytest.fail("CERTCTL_REQUIRE_PEERS=1 but CERTCTL_TEST_DATABASE_URL is not set")
        pytest.skip("no PG")
    return PG_URL.replace("postgresql+psycopg://", "postgresql://", 1)


def _registered(connection: HotConnection) -> bool:
    selector: Any = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    try:
        selector.get_key(connection.pgconn.socket)
    except KeyError:
        return False
    return True


def _run(scenario: Any) -> None:
    """On the selector event loop, whose registrations a test can read."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(scenario)


def test_the_socket_stays_registered_between_statements(conninfo: str) -> None:
    async def scenario() -> None:
        connection = await HotConnection.connect(conninfo, autocommit=True)
        fileno = connection.pgconn.socket
        for value in range(3):
            cursor = await connection.execute("SELECT %s::int", (value,))
            assert await cursor.fetchall() == [(value,)]
            assert _registered(connection)
        await connection.close()
        selector: Any = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        assert fileno not in selector.get_map()

    _run(scenario())


def test_data_while_idle_takes_it_off_and_the_next_statement_reads_on(conninfo: str) -> None:
    async def scenario() -> None:
        listener = await HotConnection.connect(conninfo, autocommit=True)
        await listener.execute("LISTEN certctl_hot")
        assert _registered(listener)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as other:
            await other.execute("NOTIFY certctl_hot, 'ping'")
        for _ in range(100):  # the notification arrives while nothing waits
            if not _registered(listener):
                break
            await asyncio.sleep(0.01)
        assert not _registered(listener)
        cursor = await listener.execute("SELECT 41 + 1")
        assert await cursor.fetchall() == [(42,)]
        assert _registered(listener)
        received = []
        async for notification in listener.notifies(timeout=1.0, stop_after=1):
            received.append(notification.payload)
        assert received == ["ping"]
        await listener.close()

    _run(scenario())


def test_a_cancelled_statement_takes_it_off(conninfo: str) -> None:
    async def scenario() -> None:
        connection = await HotConnection.connect(conninfo, autocommit=True)
        await connection.execute("SELECT 1")
        task = asyncio.get_running_loop().create_task(connection.execute("SELECT pg_sleep(5)"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not _registered(connection)
        await connection.close()

    _run(scenario())


def test_a_wait_with_a_timeout_goes_the_drivers_way(conninfo: str) -> None:
    async def scenario() -> None:
        connection = await HotConnection.connect(conninfo, autocommit=True)
        await connection.execute("SELECT 1")
        assert _registered(connection)
        async with connection.cursor() as cursor:
            await connection.wait(_select_one(cursor), timeout=5.0)
        assert not _registered(connection)
        assert await (await connection.execute("SELECT 2")).fetchall() == [(2,)]
        await connection.close()

    _run(scenario())


def _select_one(cursor: Any) -> Any:
    return cursor._execute_gen("SELECT 1", None)
