"""Replayed requests on both databases: every resource of an order's life refuses a request whose nonce
was spent (``badNonce``, with a fresh nonce) and changes nothing, including when the nonce was spent
by a request that another check refused, or by a request to another resource. On PostgreSQL these
resources spend the nonce inside their own first statement; the outcome must be the same."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from certctl.store.models import AcmeChallenge, AcmeOrder, AcmeUsedNonce
from support.acme_client import AcmeTestClient, b64url
from support.acme_inprocess import AcmeApp
from support.csrs import counts, csr_pem

pytestmark = pytest.mark.peer("pebble-challtestsrv")
ERR = "urn:ietf:params:acme:error:"


def _bad_nonce(response: Any) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["type"] == ERR + "badNonce"
    assert response.headers["Replay-Nonce"]


def _rows(app: AcmeApp) -> tuple[int, int, int]:
    async def count() -> tuple[int, int, int]:
        async with app.services.context.engine.connect() as connection:
            orders = (await connection.execute(select(func.count()).select_from(AcmeOrder))).scalar_one()
            processing = (
                await connection.execute(
                    select(func.count()).select_from(AcmeChallenge).where(AcmeChallenge.status != "pending")
                )
            ).scalar_one()
            nonces = (await connection.execute(select(func.count()).select_from(AcmeUsedNonce))).scalar_one()
        return int(orders), int(processing), int(nonces)

    return app.call(count)


def _csr(*names: str) -> str:
    pem = csr_pem(*names, key=ec.generate_private_key(ec.SECP256R1()))
    return b64url(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))


def test_each_resource_refuses_a_replay_and_changes_nothing(app: AcmeApp) -> None:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    assert acme.register().status_code == 201

    new_order = acme.directory["newOrder"]
    message = acme.sign(new_order, {"identifiers": [{"type": "dns", "value": "replay.example.test"}]})
    created = acme.post_raw(new_order, message)
    assert created.status_code == 201, created.text
    before = _rows(app)
    _bad_nonce(acme.post_raw(new_order, message))
    assert _rows(app) == before  # no second order, no other row

    order_url, order = created.headers["Location"], created.json()
    for url in (order_url, order["authorizations"][0]):
        read = acme.sign(url, None)
        assert acme.post_raw(url, read).status_code == 200
        _bad_nonce(acme.post_raw(url, read))

    challenge = acme.post(order["authorizations"][0], None).json()["challenges"][0]
    app.responder.tokens[challenge["token"]] = f"{challenge['token']}.{acme.thumbprint()}"
    answer = acme.sign(challenge["url"], {})
    assert acme.post_raw(challenge["url"], answer).status_code == 200
    _bad_nonce(acme.post_raw(challenge["url"], answer))
    for _ in range(100):
        if acme.post(order_url, None).json()["status"] == "ready":
            break
        app.call(_pause)
    else:
        raise AssertionError("the order did not become ready")

    finalize = acme.sign(order["finalize"], {"csr": _csr("replay.example.test")})
    issued_before = app.call(counts, app.services.context.engine)
    done = acme.post_raw(order["finalize"], finalize)
    assert done.status_code == 200, done.text
    issued = app.call(counts, app.services.context.engine)
    assert issued[:2] == (issued_before[0] + 1, issued_before[1] + 1)
    _bad_nonce(acme.post_raw(order["finalize"], finalize))
    assert app.call(counts, app.services.context.engine)[:2] == issued[:2]

    certificate_url = acme.post(order_url, None).json()["certificate"]
    download = acme.sign(certificate_url, None)
    assert acme.post_raw(certificate_url, download).status_code == 200
    _bad_nonce(acme.post_raw(certificate_url, download))


def test_a_refused_request_spends_its_nonce_and_a_nonce_serves_once_across_resources(app: AcmeApp) -> None:
    acme = AcmeTestClient(app.client, "https://testserver/acme/directory")
    assert acme.register().status_code == 201
    new_order = acme.directory["newOrder"]

    refused = acme.sign(new_order, {"identifiers": []})
    assert acme.post_raw(new_order, refused).json()["type"] == ERR + "malformed"
    _bad_nonce(acme.post_raw(new_order, refused))

    missing = "https://testserver/acme/default/order/ordr_missing"
    unknown = acme.sign(missing, None)
    assert acme.post_raw(missing, unknown).status_code == 404
    _bad_nonce(acme.post_raw(missing, unknown))

    # one nonce, two resources: whichever comes second is refused
    created = acme.new_order("once.example.test").json()
    nonce = acme.nonce()
    first = acme.sign(created["authorizations"][0], None, protected={"nonce": nonce})
    second = acme.sign(
        new_order,
        {"identifiers": [{"type": "dns", "value": "twice.example.test"}]},
        protected={"nonce": nonce},
    )
    assert acme.post_raw(created["authorizations"][0], first).status_code == 200
    before = _rows(app)
    _bad_nonce(acme.post_raw(new_order, second))
    assert _rows(app) == before


async def _pause() -> None:
    await asyncio.sleep(0.05)
