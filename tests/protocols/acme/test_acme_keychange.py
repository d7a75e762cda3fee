"""Account key rollover (RFC 8555 §7.3.5) in-process on both databases: the doubly signed request, the
old key stops working and the new one finds the account, a key in use is 409 with its account's URL,
and every malformed inner JWS is refused with nothing changed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from support.acme_client import REGISTRY, AcmeTestClient
from support.acme_inprocess import ERR, AcmeApp

pytestmark = pytest.mark.peer("pebble-challtestsrv")


def _inner(
    acme: AcmeTestClient, new_key: Any, *, header: dict[str, Any] | None = None, payload: Any = None
) -> dict[str, Any]:
    protected = {"alg": "ES256", "jwk": new_key.as_dict(private=False), "url": acme.directory["keyChange"]}
    protected |= header or {}
    protected = {k: v for k, v in protected.items() if v is not None}
    body = (
        payload if payload is not None else {"account": acme.kid, "oldKey": acme.key.as_dict(private=False)}
    )
    signed = jws.serialize_json(
        {"protected": protected}, json.dumps(body).encode(), new_key, registry=REGISTRY
    )
    return dict(signed)


def test_key_rollover(app: AcmeApp) -> None:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    assert acme.register().status_code == 201
    account_url = acme.kid
    old_key, new_key = acme.key, ECKey.generate_key("P-256")

    changed = acme.post(acme.directory["keyChange"], _inner(acme, new_key))
    assert changed.status_code == 200, changed.text
    assert changed.headers["Location"] == account_url

    stale = acme.post(account_url, None)
    assert (stale.status_code, stale.json()["type"]) == (400, ERR + "malformed")
    acme.key = new_key
    assert acme.post(account_url, None).json()["status"] == "valid"
    found = acme.post(acme.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert (found.status_code, found.headers["Location"]) == (200, account_url)
    stranger = AcmeTestClient(app.client, acme.directory_url, key=old_key)
    assert stranger.post(acme.directory["newAccount"], {"onlyReturnExisting": True}).json()["type"] == (
        ERR + "accountDoesNotExist"
    )


def test_key_in_use_and_bad_inner_jws(app: AcmeApp) -> None:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    acme.register()
    other = AcmeTestClient(app.client, acme.directory_url)
    other.register()

    conflict = acme.post(acme.directory["keyChange"], _inner(acme, other.key))
    assert conflict.status_code == 409
    assert conflict.json()["type"] == ERR + "conflict"
    assert conflict.headers["Location"] == other.kid

    new_key = ECKey.generate_key("P-256")
    wrong_old = {"account": acme.kid, "oldKey": other.key.as_dict(private=False)}
    wrong_account = {"account": other.kid, "oldKey": acme.key.as_dict(private=False)}
    cases = [
        _inner(acme, new_key, header={"url": acme.directory["newOrder"]}),
        _inner(acme, new_key, header={"nonce": acme.nonce()}),
        _inner(acme, new_key, payload=wrong_old),
        _inner(acme, new_key, payload=wrong_account),
        _inner(acme, new_key, header={"jwk": None, "kid": acme.kid}),
        _inner(acme, new_key, header={"jwk": ECKey.generate_key("P-256").as_dict(private=False)}),
        _inner(acme, acme.key),
        {"protected": "e30", "payload": "e30"},
    ]
    for message in cases:
        refused = acme.post(acme.directory["keyChange"], message)
        assert (refused.status_code, refused.json()["type"]) == (400, ERR + "malformed"), refused.text
    assert acme.post(acme.kid, None).status_code == 200
    assert acme.post(acme.directory["keyChange"], None).json()["type"] == ERR + "malformed"
