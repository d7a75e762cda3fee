"""``store.db.Rider``: a one-row insert carried by the next prebuilt statement of its task.

On PostgreSQL the first statement the task sends outside a transaction takes it (a SELECT, an UPDATE,
a statement that has a WITH of its own), and the two commit together; a duplicate fails the statement,
which then changes nothing, and ``refused()`` is raised. A statement inside a transaction, or sent by
another task (one the request started), does not take it. On SQLite no statement takes it: the owner
writes the record itself (``carried`` stays False)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import bindparam, func, literal, select, update

from certctl.store import db
from certctl.store.repositories import acme

NOW = datetime(2026, 11, 30, tzinfo=UTC)
ONE = select(literal(1).label("one"))
NONCES = select(func.count().label("n")).select_from(acme.USED_NONCES)
CTE_READ = (
    select(literal(2).label("two"))
    .add_cte(select(literal(3).label("three")).cte("three"))
    .where(literal(True))
)
RENAME = (
    update(acme.ACCOUNTS)
    .where(acme.ACCOUNTS.c.id == bindparam("account_id"))
    .values(status=bindparam("status"))
    .returning(acme.ACCOUNTS.c.status)
)


class Replayed(Exception):
    pass


def _rider(nonce: str) -> db.Rider:
    return acme.spent_nonce_rider(nonce, NOW, Replayed)


async def _spent(engine: Any) -> int:
    async with db.hot(engine) as connection:
        (row,) = await db.read_rows(connection, NONCES, {})
    return int(row["n"])


async def _account(engine: Any) -> None:
    account = {
        "id": "acct_rider",
        "profile": "default",
        "jwk": {"kty": "EC"},
        "jwk_thumbprint": "thumb-rider",
        "status": "valid",
        "contact": [],
        "created_at": NOW,
    }
    async with db.unit_of_work(engine) as uow:
        await acme.insert_account(uow.connection, account)


async def _status(engine: Any) -> str:
    async with db.hot(engine) as connection:
        rows = await db.read_rows(
            connection,
            select(acme.ACCOUNTS.c.status).where(acme.ACCOUNTS.c.id == bindparam("account_id")),
            {"account_id": "acct_rider"},
        )
    return str(rows[0]["status"])


def test_the_first_statement_carries_the_insert_and_a_duplicate_changes_nothing(database_url: str) -> None:
    postgres = "postgresql" in database_url

    async def scenario() -> None:
        engine = db.make_engine(database_url, pool_size=2)
        try:
            await _account(engine)
            with db.riding(_rider("n-read")) as rider:
                async with db.hot(engine) as connection:
                    assert await db.read_rows(connection, ONE, {}) == [{"one": 1}]
                    assert rider.carried is postgres
                    assert await db.read_rows(connection, CTE_READ, {}) == [{"two": 2}]  # taken once only
            assert await _spent(engine) == (1 if postgres else 0)
            if not postgres:
                return

            with db.riding(_rider("n-read")) as rider:  # the same nonce again: the read fails
                async with db.hot(engine) as connection:
                    with pytest.raises(Replayed):
                        await db.read_rows(connection, ONE, {})
                assert rider.carried

            with db.riding(_rider("n-cte")):  # a statement with a WITH of its own
                async with db.hot(engine) as connection:
                    assert await db.read_rows(connection, CTE_READ, {}) == [{"two": 2}]

            changed = {"account_id": "acct_rider", "status": "deactivated"}
            with db.riding(_rider("n-cte")):  # a write carrying a spent nonce: nothing is written
                async with db.hot(engine) as connection:
                    with pytest.raises(Replayed):
                        await db.read_rows(connection, RENAME, changed)
            assert await _status(engine) == "valid"
            with db.riding(_rider("n-write")):
                async with db.hot(engine) as connection:
                    assert await db.read_rows(connection, RENAME, changed) == [{"status": "deactivated"}]
            assert (await _status(engine), await _spent(engine)) == ("deactivated", 3)
        finally:
            await db.dispose(engine)

    asyncio.run(scenario())


def test_transactions_and_other_tasks_do_not_take_it(database_url: str) -> None:
    postgres = "postgresql" in database_url

    async def scenario() -> None:
        engine = db.make_engine(database_url, pool_size=2)
        try:
            with db.riding(_rider("n-elsewhere")) as rider:
                async with db.hot(engine, transaction=True) as connection:
                    await db.read_rows(connection, ONE, {})
                assert not rider.carried

                async def started_by_the_request() -> None:
                    async with db.hot(engine) as connection:
                        await db.read_rows(connection, ONE, {})

                await asyncio.get_running_loop().create_task(started_by_the_request())
                assert not rider.carried
                assert await _spent(engine) == 0
                assert rider.carried is postgres  # that read, in the owning task, took it
            assert await _spent(engine) == (1 if postgres else 0)
        finally:
            await db.dispose(engine)

    asyncio.run(scenario())
