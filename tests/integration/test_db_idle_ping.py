"""Pooled connections are pinged only after sitting idle: a connection whose server session ended while
it idled (a restart, a fail-over, a dropped firewall session) is replaced at checkout, so no request sees
the dead connection; busy connections are handed out with no ping round trip."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from certctl.store import db


def test_a_dead_idle_connection_is_replaced_at_checkout(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> tuple[object, object, list[int]]:
        engine = db.make_engine(database_url, pool_size=1)
        pings: list[int] = []
        real_ping = engine.dialect.do_ping

        def counting_ping(dbapi_connection: object) -> bool:
            pings.append(1)
            return bool(real_ping(dbapi_connection))

        monkeypatch.setattr(engine.dialect, "do_ping", counting_ping)
        try:
            async with engine.connect() as connection:
                if engine.dialect.name == "postgresql":
                    first = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar()
                else:
                    first = (await connection.execute(text("SELECT 1"))).scalar()
            if engine.dialect.name == "postgresql":
                killer = db.make_engine(database_url, pool_size=1)
                async with killer.connect() as other:
                    await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
                await killer.dispose()
                await asyncio.sleep(0.2)

            monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)  # every returned connection counts as idle
            async with engine.connect() as connection:
                if engine.dialect.name == "postgresql":
                    second = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar()
                else:
                    second = (await connection.execute(text("SELECT 1"))).scalar()
            pinged_when_idle = len(pings)
            monkeypatch.setattr(db, "IDLE_PING_SECONDS", 3600.0)  # busy: no ping
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 2"))
            return first, second, [pinged_when_idle, len(pings) - pinged_when_idle]
        finally:
            await engine.dispose()

    first, second, (idle_pings, busy_pings) = asyncio.run(scenario())
    if "postgresql" in database_url:
        assert second != first  # the terminated session was replaced, not handed out
        assert idle_pings >= 1
    else:  # an embedded database has no server session to lose: never pinged
        assert first == second == 1
        assert idle_pings == 0
    assert busy_pings == 0
