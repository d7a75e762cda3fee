"""ACME rate limits in-process on both databases: past the per-account order limit, or after too many
failed validations of one name, newOrder answers 429 ``rateLimited`` with Retry-After; other accounts and
other names are unaffected, and a refused order stores nothing (an order of a few names is counted and
stored by one statement on PostgreSQL, a bigger one by several). The counts come from the database, so
every replica sees the same."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from certctl.store.models import AcmeAuthorization, AcmeOrder
from support.acme_client import AcmeTestClient, Http01Server
from support.acme_inprocess import AcmeApp, acme_app, wait_for

pytestmark = pytest.mark.peer("pebble-challtestsrv")
ERR = "urn:ietf:params:acme:error:"


@pytest.fixture(params=[3, 0], ids=["orders-limited", "failures-only"])
def limited(
    request: pytest.FixtureRequest, database_url: str, resolver: str, responder: Http01Server
) -> Iterator[AcmeApp]:
    """The app with at most 2 failed validations per name and account, and (first param) 3 orders per
    account per hour, or (0) no order limit."""
    with acme_app(
        database_url,
        resolver=resolver,
        responder=responder,
        orders_per_account_hour=request.param,
        failures_per_identifier_hour=2,
    ) as running:
        yield running


def account(app: AcmeApp) -> AcmeTestClient:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    assert acme.register().status_code == 201
    return acme


@pytest.mark.parametrize("limited", [3], indirect=True, ids=["orders-limited"])
def test_orders_per_account_limit(limited: AcmeApp) -> None:
    acme = account(limited)
    for n in range(3):
        assert acme.new_order(f"n{n}.limits.example.test").status_code == 201
    refused = acme.new_order("n3.limits.example.test")
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"] == ERR + "rateLimited"
    assert "created 3 orders" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 3601
    assert account(limited).new_order("other.limits.example.test").status_code == 201


@pytest.mark.parametrize("limited", [0], indirect=True, ids=["failures-only"])
def test_failed_validations_limit_one_name(limited: AcmeApp) -> None:
    acme = account(limited)
    for _ in range(2):
        created = acme.new_order("fails.limits.example.test")
        assert created.status_code == 201
        challenges = acme.post(created.json()["authorizations"][0], None).json()["challenges"]
        challenge = next(c for c in challenges if c["type"] == "http-01")  # the responder has no token
        assert acme.post(challenge["url"], {}).status_code == 200
        assert wait_for(acme, challenge["url"], ("valid", "invalid"))["status"] == "invalid"
    refused = acme.new_order("fails.limits.example.test")
    assert refused.status_code == 429 and refused.json()["type"] == ERR + "rateLimited"
    assert "fails.limits.example.test" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert acme.new_order("works.limits.example.test").status_code == 201

    stored = _stored(limited)
    names = ["also-works.limits.example.test", "fails.limits.example.test"]
    few = acme.post(acme.directory["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in names]})
    many = [f"m{n}.limits.example.test" for n in range(5)] + ["fails.limits.example.test"]
    bulk = acme.post(acme.directory["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in many]})
    for refused in (few, bulk):
        assert refused.status_code == 429, refused.text
        assert refused.json()["detail"].startswith("fails.limits.example.test: 2 failed validations")
    assert _stored(limited) == stored


def _stored(app: AcmeApp) -> tuple[int, int]:
    async def count() -> tuple[int, int]:
        async with app.services.context.engine.connect() as connection:
            orders = (await connection.execute(select(func.count()).select_from(AcmeOrder))).scalar_one()
            authorizations = (
                await connection.execute(select(func.count()).select_from(AcmeAuthorization))
            ).scalar_one()
        return int(orders), int(authorizations)

    return app.call(count)
