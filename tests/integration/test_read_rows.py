"""``read_rows`` returns exactly what the general execution path returns (JSON decoded, booleans, UTC
datetimes, NULLs, joined and labelled columns) on each engine, including in a session whose time zone
is not UTC; ``write_rows`` stores what the general path reads back (a JSON problem document, NULLs)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from certctl.store import db
from certctl.store.repositories import acme


def test_read_rows_matches_the_general_path(database_url: str) -> None:
    now = datetime(2026, 11, 29, 12, 30, 15, tzinfo=UTC)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        engine = db.make_engine(database_url, pool_size=2)
        try:
            async with db.unit_of_work(engine) as uow:
                await acme.insert_account(
                    uow.connection,
                    {
                        "id": "acct_rr",
                        "profile": "default",
                        "jwk": {"kty": "EC", "crv": "P-256", "x": "x", "y": "y"},
                        "jwk_thumbprint": "thumb-rr",
                        "status": "valid",
                        "contact": ["mailto:ops@example.test"],
                        "created_at": now,
                    },
                )
                await acme.insert_order(
                    uow.connection,
                    order={
                        "id": "ordr_rr",
                        "account_id": "acct_rr",
                        "profile": "default",
                        "status": "pending",
                        "identifiers": [{"type": "dns", "value": "rr.example.test"}],
                        "expires_at": now + timedelta(hours=1),
                        "error": None,
                        "certificate_id": None,
                        "version_id": None,
                        "approval_id": None,
                        "replaces": None,
                        "created_at": now,
                        "updated_at": now,
                    },
                    authorizations=[
                        {
                            "id": f"authz_rr{i}",
                            "order_id": "ordr_rr",
                            "identifier_type": "dns",
                            "identifier_value": f"{i}.rr.example.test",
                            "wildcard": i == 1,
                            "status": "pending",
                            "expires_at": now,
                            "created_at": now,
                            "registered_domain": "example.test",
                        }
                        for i in range(2)
                    ],
                    challenges=[],
                )
            async with db.autocommit_reads(engine) as connection:
                if engine.dialect.name == "postgresql":
                    await connection.execute(text("SET TIME ZONE 'America/New_York'"))
                statement = acme._AUTHORIZATION_WITH_CHALLENGES
                general = [
                    dict(row)
                    for row in (await connection.execute(statement, {"authz_id": "authz_rr1"})).mappings()
                ]
                fast = await db.read_rows(connection, statement, {"authz_id": "authz_rr1"})
                order_general = [
                    dict(row)
                    for row in (
                        await connection.execute(acme._ORDER_AND_AUTHORIZATIONS, {"order_id": "ordr_rr"})
                    ).mappings()
                ]
                order_fast = await db.read_rows(
                    connection, acme._ORDER_AND_AUTHORIZATIONS, {"order_id": "ordr_rr"}
                )
            async with db.unit_of_work(engine) as uow:  # a write with a JSON parameter and a RETURNING lock
                await uow.connection.execute(
                    acme.CHALLENGES.insert(),
                    {
                        "id": "chal_rr",
                        "authorization_id": "authz_rr0",
                        "type": "http-01",
                        "token": "tok",
                        "status": "processing",
                        "validated_at": None,
                        "error": None,
                        "updated_at": now,
                    },
                )
                recorded = await acme.record_validation(
                    uow.connection,
                    challenge_id="chal_rr",
                    authz_id="authz_rr0",
                    order_id="ordr_rr",
                    error={"type": "urn:ietf:params:acme:error:connection", "detail": "refused"},
                    now=now,
                )
            assert recorded
            async with db.autocommit_reads(engine) as connection:
                stored = (await connection.execute(acme.CHALLENGES.select())).mappings().one()
                order_status = (await connection.execute(acme.ORDERS.select())).mappings().one()["status"]
            assert stored["error"] == {"type": "urn:ietf:params:acme:error:connection", "detail": "refused"}
            assert stored["status"] == "invalid" and stored["validated_at"] is None
            assert order_status == "invalid"
            return general + order_general, fast + order_fast
        finally:
            await engine.dispose()

    general, fast = asyncio.run(scenario())
    assert fast == general
    authz = fast[0]
    assert authz["wildcard"] is True
    assert authz["challenge_id"] is None
    assert authz["created_at"] == now and authz["created_at"].tzinfo is UTC
    order = fast[1]
    assert order["identifiers"] == [{"type": "dns", "value": "rr.example.test"}]
    assert [row["authz_id"] for row in fast[1:]] == ["authz_rr0", "authz_rr1"]
