"""The ACME statements that find a row by its key and check its account (finalize's claim, the
challenge's claim, the certificate download, the failed-validation count) read that row, not every
order of the account: on PostgreSQL, before the tables have statistics (a new deployment, a table
that grew fast), the planner would otherwise take the (account, created) index and walk the account's
whole history on every request. The count of a registered domain's recent orders reads that domain's
authorizations only. Checked on the plans of an account with 5,000 orders."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from certctl.store import db
from certctl.store.repositories import acme

NOW = datetime(2026, 11, 30, tzinfo=UTC)
ORDERS = 5000


async def _history(engine: Any) -> None:
    """One account with ORDERS orders, each with an authorization, its challenge and a certificate id."""
    async with db.hot(engine) as connection:
        await connection.execute(
            "INSERT INTO acme_accounts (id, profile, jwk, jwk_thumbprint, status, contact, created_at)"
            " VALUES ('acct_plan', 'default', '{}', 'thumb-plan', 'valid', '[]', %s)",
            [NOW],
        )
        await connection.execute(
            "INSERT INTO acme_orders (id, account_id, profile, status, identifiers, expires_at,"
            " certificate_id, created_at, updated_at)"
            " SELECT 'ordr_' || n, 'acct_plan', 'default', 'ready', %s, %s, 'cert_' || n, %s, %s"
            " FROM generate_series(1, %s) AS n",
            [json.dumps([{"type": "dns", "value": "x.example"}]), NOW + timedelta(days=1), NOW, NOW, ORDERS],
        )
        await connection.execute(
            "INSERT INTO acme_authorizations (id, order_id, identifier_type, identifier_value, wildcard,"
            " status, expires_at, created_at, registered_domain)"
            " SELECT 'authz_' || n, 'ordr_' || n, 'dns', 'n' || n || '.example', false, 'pending', %s, %s,"
            " 'n' || n || '.example'"
            " FROM generate_series(1, %s) AS n",
            [NOW + timedelta(days=1), NOW, ORDERS],
        )
        await connection.execute(
            "INSERT INTO acme_challenges (id, authorization_id, type, token, status, updated_at)"
            " SELECT 'chal_' || n, 'authz_' || n, 'http-01', 'token' || n, 'pending', %s"
            " FROM generate_series(1, %s) AS n",
            [NOW, ORDERS],
        )


def test_ownership_checks_read_the_row_their_key_finds(postgres_url: str) -> None:
    async def scenario() -> dict[str, str]:
        engine = db.make_engine(postgres_url)
        try:
            await _history(engine)
            checks = {
                "finalize claim": (
                    acme._CLAIM_WITH_AUTHORIZATIONS,
                    {"order_id": "ordr_200", "owner": "acct_plan", "now": NOW},
                ),
                "challenge claim": (
                    acme._CLAIM_CHALLENGE_IN_CONTEXT,
                    {"challenge_id": "chal_200", "owner": "acct_plan", "now": NOW},
                ),
                "certificate download": (
                    acme._CERTIFICATE_OF_ACCOUNT,
                    {"version_id": "ver_200", "account_id": "acct_plan"},
                ),
                "failed validations": (
                    acme._RECENT_FAILURES_ANY,
                    {"account_id": "acct_plan", "values": ["n200.example"], "since": NOW},
                ),
                "new order, failed validations counted": (
                    acme._order_insert(1, 1, acme._LimitShape(orders=False, failures=True, domains=False)),
                    {"account_id": "acct_plan", "a0_identifier_value": "n200.example", "since": NOW},
                ),
                "registered domain orders": (
                    acme._RECENT_DOMAIN_ORDERS_ANY,
                    {"domains": ["n200.example"], "since": NOW},
                ),
                "new order, registered domains counted": (
                    acme._order_insert(1, 1, acme._LimitShape(orders=False, failures=False, domains=True)),
                    {"a0_registered_domain": "n200.example", "since": NOW},
                ),
            }
            plans: dict[str, list[tuple[str, str, str]]] = {}
            async with db.hot(engine) as connection:
                for label, (statement, parameters) in checks.items():
                    compiled = db._compiled(db._dialect_of(connection), statement)
                    values = db._bound(compiled, parameters)
                    cursor = psycopg.AsyncRawCursor(connection)  # $n parameters, as the statements run
                    await cursor.execute("EXPLAIN (FORMAT JSON) " + compiled.sql, values)
                    row = await cursor.fetchone()
                    assert row is not None
                    plans[label] = list(_scans(row[0][0]["Plan"]))
            return plans
        finally:
            await db.dispose(engine)

    plans = asyncio.run(scenario())
    for label in ("registered domain orders", "new order, registered domains counted"):
        scans = plans.pop(label)
        assert ("Seq Scan", "acme_authorizations") not in {(n, r) for n, r, _ in scans}, f"{label}: {scans}"
        assert any(i == "ix_acme_authorizations_registered_domain_created_at" for _, _, i in scans), label
    for label, scans in plans.items():
        assert any(relation == "acme_orders" for _, relation, _ in scans), f"{label}: {scans}"
        for node, relation, index in scans:
            assert (node, relation) != ("Seq Scan", "acme_orders"), f"{label} reads every order"
            assert index != "ix_acme_orders_account_id_created_at", f"{label} walks the account's orders"


def _scans(plan: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(node type, relation, index) of every scan in a JSON plan (a bitmap's index scan names no
    relation)."""
    if plan["Node Type"].endswith("Scan"):
        yield plan["Node Type"], plan.get("Relation Name", ""), plan.get("Index Name", "")
    for child in plan.get("Plans", []):
        yield from _scans(child)
