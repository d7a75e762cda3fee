"""ACME rate limits in-process on both databases: past the per-account order limit, after too many
failed validations of one name, or past the orders of every account naming one registered domain,
newOrder answers 429 ``rateLimited`` with Retry-After; other accounts and other names are unaffected, and
a refused order stores nothing (an order of a few names is counted and stored by one statement on
PostgreSQL, a bigger one by several). Past the new accounts of one client address (an IPv6 address
counted as its /64), newAccount answers the same and creates nothing, while the existing accounts of
that address are still found. The counts come from the database, so every replica sees the same."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from certctl.store.models import AcmeAccount, AcmeAuthorization, AcmeOrder
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


@pytest.fixture
def by_domain(database_url: str, resolver: str, responder: Http01Server) -> Iterator[AcmeApp]:
    """The app with at most 2 orders per registered domain per hour, across accounts."""
    with acme_app(database_url, resolver=resolver, responder=responder, orders_per_domain_hour=2) as running:
        yield running


def test_orders_per_registered_domain_across_accounts(by_domain: AcmeApp) -> None:
    first, second, third = account(by_domain), account(by_domain), account(by_domain)
    # one order naming two names of the domain counts once; a wildcard counts as its base name
    assert first.new_order("a.example.test", "b.a.example.test").status_code == 201
    assert second.new_order("c.deep.example.test").status_code == 201
    stored = _stored(by_domain)
    refused = third.new_order("d.example.test")
    assert refused.status_code == 429, refused.text
    assert refused.json()["type"] == ERR + "rateLimited"
    assert refused.json()["detail"].startswith("example.test: 2 orders named this registered domain")
    assert 1 <= int(refused.headers["Retry-After"]) <= 3601
    assert first.new_order("e.example.test").status_code == 429  # the domain, not the account
    mixed = ["x.elsewhere.test", "f.example.test"]
    assert third.new_order(*mixed).status_code == 429  # one limited domain refuses the whole order
    bulk = [f"n{n}.elsewhere.test" for n in range(5)] + ["g.example.test"]
    assert third.new_order(*bulk).status_code == 429  # bigger orders are counted the same way
    assert _stored(by_domain) == stored
    assert third.new_order("x.elsewhere.test", "y.elsewhere.test").status_code == 201


@pytest.fixture
def by_address(database_url: str, resolver: str, responder: Http01Server) -> Iterator[AcmeApp]:
    """The app with at most 2 new accounts per client address per hour."""
    with acme_app(
        database_url, resolver=resolver, responder=responder, accounts_per_address_hour=2
    ) as running:
        yield running


def from_address(app: AcmeApp, host: str) -> AcmeTestClient:
    client = TestClient(app.client.app, base_url="https://testserver", client=(host, 40000))
    return AcmeTestClient(client, "https://testserver/acme/directory")


def test_new_accounts_per_client_address(by_address: AcmeApp) -> None:
    kept = from_address(by_address, "192.0.2.10")
    assert kept.register().status_code == 201
    assert from_address(by_address, "192.0.2.10").register().status_code == 201
    before = _accounts(by_address)
    refused = from_address(by_address, "192.0.2.10").register()
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"] == ERR + "rateLimited"
    assert refused.json()["detail"] == ("2 accounts were created from 192.0.2.10 in the last hour (limit 2)")
    assert 1 <= int(refused.headers["Retry-After"]) <= 3601
    assert _accounts(by_address) == before
    account_url, kept.kid = kept.kid, None
    again = kept.register()  # an existing account of the address is found, not created
    assert again.status_code == 200 and again.headers["Location"] == account_url
    assert kept.new_order("kept.example.test").status_code == 201
    assert from_address(by_address, "192.0.2.11").register().status_code == 201
    # IPv6: one /64 is one client; an IPv4-mapped address is the IPv4 address
    assert from_address(by_address, "2001:db8:1:2::5").register().status_code == 201
    assert from_address(by_address, "2001:db8:1:2:ffff::9").register().status_code == 201
    assert from_address(by_address, "2001:db8:1:2::7").register().status_code == 429
    assert from_address(by_address, "2001:db8:1:3::5").register().status_code == 201
    assert from_address(by_address, "::ffff:192.0.2.10").register().status_code == 429


def _accounts(app: AcmeApp) -> int:
    async def count() -> int:
        async with app.services.context.engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(AcmeAccount))).scalar_one())

    return int(app.call(count))


def _stored(app: AcmeApp) -> tuple[int, int]:
    async def count() -> tuple[int, int]:
        async with app.services.context.engine.connect() as connection:
            orders = (await connection.execute(select(func.count()).select_from(AcmeOrder))).scalar_one()
            authorizations = (
                await connection.execute(select(func.count()).select_from(AcmeAuthorization))
            ).scalar_one()
        return int(orders), int(authorizations)

    return app.call(count)
