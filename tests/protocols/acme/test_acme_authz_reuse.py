"""Authorization reuse (RFC 8555 §7.1.4) in-process on both databases: an account that proved a name
recently gets a valid authorization (and a ready order) without a new challenge; another account, or the
wildcard of that name, must prove it again."""

from __future__ import annotations

import pytest

from support.acme_client import AcmeTestClient
from support.acme_inprocess import AcmeApp, issue

pytestmark = pytest.mark.peer("pebble-challtestsrv")


def test_recent_proof_is_reused_by_the_same_account_only(app: AcmeApp) -> None:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    assert acme.register().status_code == 201
    issue(acme, app.responder, "reuse.example.test")

    again = acme.new_order("reuse.example.test")
    assert again.status_code == 201
    assert again.json()["status"] == "ready"
    authz = acme.post(again.json()["authorizations"][0], None).json()
    assert authz["status"] == "valid"
    assert [c["status"] for c in authz["challenges"]] == ["valid"]

    mixed = acme.new_order("reuse.example.test", "fresh.example.test")
    assert mixed.json()["status"] == "pending"
    states = sorted(acme.post(url, None).json()["status"] for url in mixed.json()["authorizations"])
    assert states == ["pending", "valid"]

    stranger = AcmeTestClient(app.client, acme.directory_url)
    assert stranger.register().status_code == 201
    theirs = stranger.new_order("reuse.example.test")
    assert theirs.json()["status"] == "pending"
    assert stranger.post(theirs.json()["authorizations"][0], None).json()["status"] == "pending"
