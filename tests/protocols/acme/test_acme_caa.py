"""CAA (RFC 8659) in-process on both databases: with CAA identities configured, a name whose CAA records
name another CA is refused with the ``caa`` error; records naming us, or no records at all, allow it;
``issuewild`` governs wildcards; a critical unknown tag forbids issuance. The records are published by
pebble-challtestsrv (the DNS server the ACME server resolves through)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from certctl.services.acme_caa import permits
from support.acme_client import CHALLTESTSRV_MANAGEMENT, AcmeTestClient, Http01Server
from support.acme_inprocess import AcmeApp, acme_app, validate, wait_for

pytestmark = pytest.mark.peer("pebble-challtestsrv")
ERR = "urn:ietf:params:acme:error:"
US = "ca.certctl.test"


@pytest.fixture
def caa_app(database_url: str, resolver: str, responder: Http01Server) -> Iterator[AcmeApp]:
    with acme_app(database_url, resolver=resolver, responder=responder, caa_identities=(US,)) as running:
        yield running


def publish(resolver: str, host: str, policies: list[dict[str, Any]]) -> None:
    body = json.dumps({"host": host, "policies": policies}).encode()
    request = urllib.request.Request(CHALLTESTSRV_MANAGEMENT[resolver] + "/add-caa", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200


def order_outcome(app: AcmeApp, name: str) -> dict[str, Any]:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    assert acme.register().status_code == 201
    created = acme.new_order(name)
    assert created.status_code == 201, created.text
    validate(acme, app.responder, created.json())
    authz = acme.post(created.json()["authorizations"][0], None).json()
    order = wait_for(acme, created.headers["Location"], ("ready", "invalid"))
    return {"order": order, "authz": authz}


def test_caa_allows_us_or_no_records_and_refuses_another_ca(caa_app: AcmeApp, resolver: str) -> None:
    publish(resolver, "ours.caa.example.test.", [{"tag": "issue", "value": f"{US}; account=1"}])
    publish(resolver, "theirs.caa.example.test.", [{"tag": "issue", "value": "other-ca.example"}])
    publish(resolver, "parent.example.test.", [{"tag": "issue", "value": "other-ca.example"}])

    assert order_outcome(caa_app, "ours.caa.example.test")["order"]["status"] == "ready"
    assert order_outcome(caa_app, "nothing.caa-free.example.test")["order"]["status"] == "ready"

    refused = order_outcome(caa_app, "theirs.caa.example.test")
    assert refused["order"]["status"] == "invalid"
    [challenge] = [c for c in refused["authz"]["challenges"] if c.get("error")]
    assert challenge["error"]["type"] == ERR + "caa"
    assert "do not authorise" in challenge["error"]["detail"]

    # A name without its own records is governed by its closest ancestor's (tree climbing).
    inherited = order_outcome(caa_app, "www.parent.example.test")
    assert inherited["order"]["status"] == "invalid"


def test_caa_rules() -> None:
    ours = (US,)
    assert permits([], wildcard=False, identities=ours) is None
    assert permits([(0, "issue", US)], wildcard=False, identities=ours) is None
    assert permits([(0, "issue", "CA.CERTCTL.TEST")], wildcard=False, identities=ours) is None
    assert permits([(0, "issue", "other")], wildcard=False, identities=ours) is not None
    assert permits([(0, "issue", "")], wildcard=False, identities=ours) is not None  # "issue ;" allows no one
    assert permits([(0, "iodef", "mailto:x@example")], wildcard=False, identities=ours) is None
    # issuewild governs wildcards when present; issue otherwise.
    assert permits([(0, "issue", US), (0, "issuewild", "other")], wildcard=True, identities=ours) is not None
    assert permits([(0, "issue", "other"), (0, "issuewild", US)], wildcard=True, identities=ours) is None
    assert permits([(0, "issue", US)], wildcard=True, identities=ours) is None
    assert permits([(0, "issue", "other"), (0, "issuewild", US)], wildcard=False, identities=ours) is not None
    # A critical record with a tag we do not know forbids issuance; a non-critical one is ignored.
    assert permits([(0, "issue", US), (128, "future", "x")], wildcard=False, identities=ours) is not None
    assert permits([(0, "issue", US), (0, "future", "x")], wildcard=False, identities=ours) is None
