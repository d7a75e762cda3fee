"""ACME profiles (draft-aaron-acme-profiles) in-process on both databases: ``meta.profiles`` lists the
ACME-enabled profiles, a newOrder ``profile`` picks one (echoed in the order, and the certificate is
issued under it), and an unknown or ACME-disabled name is ``invalidProfile`` with no order written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from certctl.services.audit import SYSTEM
from certctl.store.models import AcmeOrder
from support.acme_client import AcmeTestClient, Http01Server
from support.acme_inprocess import ERR, AcmeApp, acme_app, issue
from support.seed import DEFAULT_RULES

pytestmark = pytest.mark.peer("pebble-challtestsrv")


@pytest.fixture
def app(database_url: str, resolver: str, responder: Http01Server) -> Iterator[AcmeApp]:
    with acme_app(database_url, resolver=resolver, responder=responder) as running:
        for name, rules in (
            ("short", DEFAULT_RULES),
            ("internal", DEFAULT_RULES | {"acme": {"enabled": False}}),
        ):
            values = {"name": name, "description": f"{name} certificates", "rules": rules}
            running.call(lambda v=values: running.services.profiles.create(values=v, actor=SYSTEM))
        yield running


async def _orders(engine: Any) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(AcmeOrder))).scalar_one())


def test_profiles_listed_and_selected(app: AcmeApp, responder: Http01Server) -> None:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    acme.register()
    assert acme.directory["meta"]["profiles"] == {"default": "tests", "short": "short certificates"}

    order, _ = issue(acme, responder, "profiled.example.test", extra={"profile": "short"})
    assert order["profile"] == "short"
    assert acme.post(order["url"], None).json()["profile"] == "short"
    name = "acme-" + order["url"].rsplit("/", 1)[1]
    issued = app.client.get(f"/api/v1/certificates/{name}", headers=app.admin()).json()
    short = app.client.get("/api/v1/profiles/short", headers=app.admin()).json()
    assert issued["profile_id"] == short["id"]

    plain = acme.new_order("plain.example.test").json()
    assert plain["profile"] == "default"


def test_unknown_or_disabled_profile(app: AcmeApp) -> None:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    acme.register()
    engine = app.services.context.engine
    before = app.call(_orders, engine)
    identifiers = {"identifiers": [{"type": "dns", "value": "x.example.test"}]}
    for profile in ("missing", "internal"):
        refused = acme.post(acme.directory["newOrder"], identifiers | {"profile": profile})
        assert (refused.status_code, refused.json()["type"]) == (400, ERR + "invalidProfile"), refused.text
    wrong_type = acme.post(acme.directory["newOrder"], identifiers | {"profile": 7})
    assert (wrong_type.status_code, wrong_type.json()["type"]) == (400, ERR + "malformed")
    assert app.call(_orders, engine) == before
