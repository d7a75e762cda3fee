"""The JWS transport of the ACME server (RFC 8555 §6): each bad request gets its exact problem type, a
fresh nonce, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import ECKey, OctKey, RSAKey
from sqlalchemy import func, select

from certctl.store.models import AcmeAccount, AcmeOrder
from support.acme_client import AcmeTestClient
from support.apps import ApiHarness

ERR = "urn:ietf:params:acme:error:"


def _counts(api: ApiHarness) -> tuple[int, int]:
    async def count() -> tuple[int, int]:
        async with api.services.context.engine.connect() as connection:
            accounts = (await connection.execute(select(func.count()).select_from(AcmeAccount))).scalar_one()
            orders = (await connection.execute(select(func.count()).select_from(AcmeOrder))).scalar_one()
        return int(accounts), int(orders)

    return api.run(count)


def _problem(response: Any, kind: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == ERR + kind, response.json()["detail"]
    assert response.headers["Replay-Nonce"]
    assert response.headers["Link"].endswith('/acme/default/directory>;rel="index"')


@pytest.fixture
def acme(api: ApiHarness) -> AcmeTestClient:
    return AcmeTestClient(api.client, "https://testserver/acme/directory")


def test_directory_and_nonce(api: ApiHarness, acme: AcmeTestClient) -> None:
    directory = acme.directory
    assert directory["newNonce"] == "https://testserver/acme/default/new-nonce"
    assert directory["meta"]["externalAccountRequired"] is False
    assert api.client.get("/acme/default/directory").json() == directory
    head = api.client.head(directory["newNonce"])
    get = api.client.get(directory["newNonce"])
    assert (head.status_code, get.status_code) == (200, 204)
    for response in (head, get):
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Link"] == '<https://testserver/acme/default/directory>;rel="index"'
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
    assert api.client.get("/acme/nope/directory").status_code == 404


def test_account_lifecycle(api: ApiHarness, acme: AcmeTestClient) -> None:
    missing = acme.post(acme.directory["newAccount"], {"onlyReturnExisting": True})
    _problem(missing, "accountDoesNotExist")
    created = acme.post(
        acme.directory["newAccount"], {"termsOfServiceAgreed": True, "contact": ["mailto:a@example.com"]}
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "valid"
    kid = created.headers["Location"]
    again = acme.post(acme.directory["newAccount"], {"onlyReturnExisting": True})
    assert (again.status_code, again.headers["Location"]) == (200, kid)
    acme.kid = kid
    read = acme.post(kid, None)
    assert read.json()["contact"] == ["mailto:a@example.com"]
    assert acme.post(read.json()["orders"], None).json() == {"orders": []}
    bad_contact = acme.post(kid, {"contact": ["tel:+1555"]})
    _problem(bad_contact, "unsupportedContact")
    deactivated = acme.post(kid, {"status": "deactivated"})
    assert deactivated.json()["status"] == "deactivated"
    _problem(acme.post(kid, None), "unauthorized", 403)
    assert _counts(api) == (1, 0)


def test_bad_jws_requests_are_refused_and_write_nothing(api: ApiHarness, acme: AcmeTestClient) -> None:
    url = acme.directory["newAccount"]
    payload = {"termsOfServiceAgreed": True}
    _problem(
        acme.post(url, payload, protected={"url": "https://testserver/acme/default/other"}),
        "unauthorized",
        403,
    )
    _problem(acme.post(url, payload, protected={"nonce": None}), "badNonce")
    _problem(acme.post(url, payload, protected={"nonce": "AAAA"}), "badNonce")
    _problem(
        acme.post(url, payload, protected={"kid": "https://testserver/acme/default/acct/x"}), "malformed"
    )
    _problem(
        acme.post(url, payload, protected={"alg": "none"}, message=_unsigned(acme, url)),
        "badSignatureAlgorithm",
    )
    hs = acme.post(url, payload, protected={"alg": "HS256"}, key=OctKey.generate_key(256))
    _problem(hs, "badSignatureAlgorithm")
    assert hs.json()["type"] == ERR + "badSignatureAlgorithm" and "ES256" in hs.json()["algorithms"]
    tampered = acme.sign(url, payload)
    tampered["payload"] = acme.sign(url, {"termsOfServiceAgreed": False})["payload"]
    _problem(acme.post_raw(url, tampered), "malformed")
    other_key = acme.sign(url, payload, key=ECKey.generate_key("P-256"))
    other_key["protected"] = acme.sign(url, payload)["protected"]
    _problem(acme.post_raw(url, other_key), "malformed")
    _problem(acme.post_raw(url, acme.sign(url, payload), content_type="application/json"), "malformed", 415)
    general = {"payload": "", "signatures": [{"protected": "", "signature": ""}]}
    _problem(acme.post_raw(url, general), "malformed")
    unknown_kid = AcmeTestClient(
        api.client, acme.directory_url, kid="https://testserver/acme/default/acct/acct_nope"
    )
    _problem(unknown_kid.post(acme.directory["newOrder"], {"identifiers": []}), "accountDoesNotExist")
    assert _counts(api) == (0, 0)


def test_reused_nonce_is_refused(api: ApiHarness, acme: AcmeTestClient) -> None:
    message = acme.sign(acme.directory["newAccount"], {"termsOfServiceAgreed": True})
    assert acme.post_raw(acme.directory["newAccount"], message).status_code == 201
    _problem(acme.post_raw(acme.directory["newAccount"], message), "badNonce")
    assert _counts(api) == (1, 0)


def test_rsa_account_and_order_rules(api: ApiHarness) -> None:
    acme = AcmeTestClient(
        api.client, "https://testserver/acme/directory", key=RSAKey.generate_key(2048), alg="PS256"
    )
    assert acme.register().status_code == 201
    both = acme.post(
        acme.directory["newOrder"], {"identifiers": []}, protected={"jwk": acme.key.as_dict(private=False)}
    )
    _problem(both, "malformed")
    _problem(acme.post(acme.directory["newOrder"], {"identifiers": []}), "malformed")
    wildcard = acme.post(
        acme.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "*.example.test"}]}
    )
    _problem(wildcard, "rejectedIdentifier")
    email = acme.post(acme.directory["newOrder"], {"identifiers": [{"type": "email", "value": "a@b.c"}]})
    _problem(email, "unsupportedIdentifier")
    assert _counts(api) == (1, 0)
    order = acme.new_order("www.example.test", "example.test")
    assert order.status_code == 201, order.text
    body = order.json()
    assert body["status"] == "pending" and len(body["authorizations"]) == 2
    authz = acme.post(body["authorizations"][0], None).json()
    assert authz["challenges"][0]["type"] == "http-01"
    not_ready = acme.post(body["finalize"], {"csr": "AAAA"})
    _problem(not_ready, "orderNotReady", 403)


def _unsigned(acme: AcmeTestClient, url: str) -> dict[str, Any]:
    import base64
    import json

    def b64(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    header = {"alg": "none", "nonce": acme.nonce(), "url": url, "jwk": acme.key.as_dict(private=False)}
    return {"protected": b64(header), "payload": b64({"termsOfServiceAgreed": True}), "signature": ""}
