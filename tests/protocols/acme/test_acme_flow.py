"""The whole ACME flow in-process on both databases: account, order, http-01 validated by the server
against a local responder (names resolved by pebble-challtestsrv), finalize, download, revoke."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from certctl.api.app import create_app
from certctl.keys.envelope import MasterKey
from certctl.services.acme import AcmeConfig
from certctl.services.container import build_services
from certctl.store.db import make_engine
from support.acme_client import AcmeTestClient, Http01Server, b64url
from support.csrs import counts, csr_pem
from support.seed import seed_minimal

pytestmark = pytest.mark.peer("pebble-challtestsrv")
ERR = "urn:ietf:params:acme:error:"


@pytest.fixture
def acme_app(database_url: str, resolver: str, responder: Http01Server) -> Iterator[tuple[TestClient, Any]]:
    config = AcmeConfig(http01_port=responder.port, dns_resolver=resolver, validation_timeout_seconds=5)
    services = build_services(
        engine=make_engine(database_url, pool_size=5),
        master_key=MasterKey(secrets.token_bytes(32)),
        public_http_url="http://127.0.0.1:8080",
        cache_ttl_seconds=0.0,
        acme=config,
    )
    with TestClient(create_app(services), base_url="https://testserver") as client:
        assert client.portal is not None
        client.portal.call(seed_minimal, services)
        try:
            yield client, services
        finally:
            client.portal.call(services.acme.validator.drain)
            client.portal.call(services.context.engine.dispose)


def _wait(acme: AcmeTestClient, url: str, done: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body: dict[str, Any] = acme.post(url, None).json()
        if body["status"] in done:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{url} stayed {body['status']}")


def _validate(
    acme: AcmeTestClient, responder: Http01Server, order: dict[str, Any], serve: bool = True
) -> None:
    for authz_url in order["authorizations"]:
        challenge = acme.post(authz_url, None).json()["challenges"][0]
        if serve:
            responder.tokens[challenge["token"]] = f"{challenge['token']}.{acme.thumbprint()}"
        answered = acme.post(challenge["url"], {})
        assert answered.status_code == 200, answered.text
        _wait(acme, challenge["url"], ("valid", "invalid"))


def test_issue_download_and_revoke(acme_app: tuple[TestClient, Any], responder: Http01Server) -> None:
    client, services = acme_app
    acme = AcmeTestClient(client, "https://testserver/acme/directory")
    assert acme.register().status_code == 201
    created = acme.new_order("www.example.test", "example.test")
    order_url = created.headers["Location"]
    _validate(acme, responder, created.json())
    assert acme.post(order_url, None).json()["status"] == "ready"

    before = client.portal.call(counts, services.context.engine)  # type: ignore[union-attr]
    wrong = acme.post(created.json()["finalize"], {"csr": b64url(_der(csr_pem("www.example.test")))})
    assert wrong.json()["type"] == ERR + "badCSR"
    garbage = acme.post(created.json()["finalize"], {"csr": b64url(b"\x30\x03\x02\x01\x00")})
    assert garbage.json()["type"] == ERR + "badCSR"
    assert client.portal.call(counts, services.context.engine)[:2] == before[:2]  # type: ignore[union-attr]
    assert acme.post(order_url, None).json()["status"] == "ready"  # a refused CSR leaves the order ready
    other = AcmeTestClient(client, acme.directory_url)
    other.register()
    good = {"csr": b64url(_der(csr_pem("www.example.test", "example.test")))}
    assert other.post(created.json()["finalize"], good).status_code == 404  # not another account's to take
    assert acme.post(order_url, None).json()["status"] == "ready"

    key = ec.generate_private_key(ec.SECP256R1())
    csr = _der(csr_pem("www.example.test", "example.test", key=key))
    finalized = acme.post(created.json()["finalize"], {"csr": b64url(csr)})
    assert finalized.status_code == 200, finalized.text
    order = finalized.json()
    assert order["status"] == "valid"
    assert order["authorizations"] == created.json()["authorizations"]
    again = acme.post(created.json()["finalize"], {"csr": b64url(csr)})
    assert again.json()["type"] == ERR + "orderNotReady"
    chain = acme.post(order["certificate"], None)
    assert chain.headers["content-type"] == "application/pem-certificate-chain"
    certs = x509.load_pem_x509_certificates(chain.content)
    assert len(certs) >= 2
    names = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == ["example.test", "www.example.test"]
    managed = client.get("/api/v1/certificates", headers=_admin(client, services)).json()
    assert any(c["source"] == "acme" and not c["auto_renew"] for c in managed["items"])
    assert acme.post(acme.kid + "/orders", None).json()["orders"] == [order_url]  # type: ignore[operator]

    der = certs[0].public_bytes(serialization.Encoding.DER)
    stranger = AcmeTestClient(client, acme.directory_url)
    stranger.register()
    refused = stranger.post(acme.directory["revokeCert"], {"certificate": b64url(der)})
    assert refused.json()["type"] == ERR + "unauthorized"
    bad_reason = acme.post(acme.directory["revokeCert"], {"certificate": b64url(der), "reason": 6})
    assert bad_reason.json()["type"] == ERR + "badRevocationReason"
    revoked = acme.post(acme.directory["revokeCert"], {"certificate": b64url(der), "reason": 1})
    assert revoked.status_code == 200, revoked.text
    again = acme.post(acme.directory["revokeCert"], {"certificate": b64url(der)})
    assert again.json()["type"] == ERR + "alreadyRevoked"


def test_revoke_by_certificate_key_and_failed_validation(
    acme_app: tuple[TestClient, Any], responder: Http01Server
) -> None:
    client, _ = acme_app
    acme = AcmeTestClient(client, "https://testserver/acme/directory")
    acme.register()
    failing = acme.new_order("nothing-served.example.test")
    _validate(acme, responder, failing.json(), serve=False)
    order = acme.post(failing.headers["Location"], None).json()
    assert order["status"] == "invalid"
    authz = acme.post(order["authorizations"][0], None).json()
    assert authz["status"] == "invalid"
    assert authz["challenges"][0]["error"]["type"] == ERR + "unauthorized"

    created = acme.new_order("byk.example.test")
    _validate(acme, responder, created.json())
    key = ec.generate_private_key(ec.SECP256R1())
    finalized = acme.post(
        created.json()["finalize"], {"csr": b64url(_der(csr_pem("byk.example.test", key=key)))}
    )
    pem = acme.post(finalized.json()["certificate"], None).content
    der = x509.load_pem_x509_certificates(pem)[0].public_bytes(serialization.Encoding.DER)
    jwk_key = ECKey.import_key(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    revoked = acme.post(acme.directory["revokeCert"], {"certificate": b64url(der)}, use_jwk=True, key=jwk_key)
    assert revoked.status_code == 200, revoked.text


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)


def _admin(client: TestClient, services: Any) -> dict[str, str]:
    from certctl.services.audit import SYSTEM

    assert client.portal is not None
    created = client.portal.call(
        lambda: services.api_keys.create(name="acme-admin", roles=["admin"], expires_in=None, actor=SYSTEM)
    )
    return {"Authorization": f"Bearer {created.secret}"}
