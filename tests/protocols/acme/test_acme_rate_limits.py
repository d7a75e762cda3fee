"""ACME rate limits in-process on both databases: past the per-account order limit, or after too many
failed validations of one name, newOrder answers 429 ``rateLimited`` with Retry-After; other accounts and
other names are unaffected. The counts come from the database, so every replica sees the same."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.acme_client import AcmeTestClient, Http01Server
from support.acme_inprocess import AcmeApp, acme_app, wait_for

pytestmark = pytest.mark.peer("pebble-challtestsrv")
ERR = "urn:ietf:params:acme:error:"


@pytest.fixture
def limited(database_url: str, resolver: str, responder: Http01Server) -> Iterator[AcmeApp]:
    with acme_app(
        database_url,
        resolver=resolver,
        responder=responder,
        orders_per_account_hour=3,
        failures_per_identifier_hour=2,
    ) as running:
        yield running


def account(app: AcmeApp) -> AcmeTestClient:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    assert acme.register().status_code == 201
    return acme


def test_orders_per_account_limit(limited: AcmeApp) -> None:
    acme = account(limited)
    for n in range(3):
        assert acme.new_order(f"n{n}.limits.example.test").status_code == 201
    refused = acme.new_order("n3.limits.example.test")
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"] == ERR + "rateLimited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3601
    assert account(limited).new_order("other.limits.example.test").status_code == 201


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
