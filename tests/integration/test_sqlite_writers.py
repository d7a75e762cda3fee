"""SQLite transactions of one process take turns (``store.db.begin``): many concurrent writers all
commit, none sees "database is locked"; a task already inside a transaction opens another without
waiting for itself; each event loop has its own turn-taking. (On PostgreSQL ``begin`` is the engine's
own; its concurrency is covered by the suite's PostgreSQL runs.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import func, select, text

from certctl.store import db

WRITERS = 40


async def _scenario(url: str) -> tuple[int, int]:
    engine = db.make_engine(url, pool_size=5)
    try:
        async with db.begin(engine) as connection:
            await connection.execute(
                text("CREATE TABLE writers_probe (n INTEGER PRIMARY KEY, again INTEGER)")
            )

        async def write(n: int) -> None:
            async with db.unit_of_work(engine) as uow:
                await uow.connection.execute(text("INSERT INTO writers_probe (n) VALUES (:n)"), {"n": n})
                await asyncio.sleep(0)  # let the other writers run meanwhile
                async with db.one_statement(engine) as inner:  # the same task: no wait for itself
                    await inner.execute(select(func.count()).select_from(text("writers_probe")))
                await uow.connection.execute(
                    text("UPDATE writers_probe SET again = 1 WHERE n = :n"), {"n": n}
                )

        await asyncio.gather(*(write(n) for n in range(WRITERS)))
        async with db.read_only(engine) as connection:
            rows = (await connection.execute(text("SELECT count(*), sum(again) FROM writers_probe"))).one()
        async with db.begin(engine) as connection:
            await connection.execute(text("DROP TABLE writers_probe"))
        return int(rows[0]), int(rows[1])
    finally:
        await db.dispose(engine)


def test_concurrent_writers_all_commit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'writers.db'}"
    assert asyncio.run(_scenario(url)) == (WRITERS, WRITERS)
    assert asyncio.run(_scenario(url)) == (WRITERS, WRITERS)  # a second event loop
