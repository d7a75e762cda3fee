"""The ACME server in-process for feature tests: an app with a seeded hierarchy, an http-01 responder and
names resolved by pebble-challtestsrv, plus a helper that takes an order from creation to a certificate."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.testclient import TestClient

from certctl.api.app import create_app
from certctl.keys.envelope import MasterKey
from certctl.services.acme import AcmeConfig
from certctl.services.audit import SYSTEM
from certctl.services.container import Services, build_services
from certctl.store.db import make_engine
from support.acme_client import AcmeTestClient, Http01Server, b64url
from support.csrs import csr_pem
from support.seed import seed_minimal

ERR = "urn:ietf:params:acme:error:"


@dataclass
class AcmeApp:
    client: TestClient
    services: Services
    responder: Http01Server

    def call(self, function: Any, *args: Any) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(function, *args)

    def admin(self) -> dict[str, str]:
        created = self.call(
            lambda: self.services.api_keys.create(
                name=f"admin-{secrets.token_hex(3)}", roles=["admin"], expires_in=None, actor=SYSTEM
            )
        )
        return {"Authorization": f"Bearer {created.secret}"}


@contextmanager
def acme_app(
    database_url: str, *, resolver: str, responder: Http01Server, **settings: Any
) -> Iterator[AcmeApp]:
    """The app with ACME validating through ``resolver`` and ``responder``; ``settings`` override other
    :class:`AcmeConfig` fields (CAA identities, rate limits, ...)."""
    config = AcmeConfig(
        http01_port=responder.port, dns_resolver=resolver, validation_timeout_seconds=5, **settings
    )
    services = build_services(
        engine=make_engine(database_url, pool_size=5),
        master_key=MasterKey(secrets.token_bytes(32)),
        public_http_url="http://127.0.0.1:8080",
        cache_ttl_seconds=0.0,
        acme=config,
    )
    with TestClient(create_app(services), base_url="https://testserver") as client:
        app = AcmeApp(client=client, services=services, responder=responder)
        app.call(seed_minimal, services)
        try:
            yield app
        finally:
            app.call(services.acme.validator.drain)
            app.call(services.context.engine.dispose)


def wait_for(acme: AcmeTestClient, url: str, done: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = acme.post(url, None).json()
        if body["status"] in done:
            return body
        time.sleep(0.1)
    raise AssertionError(f"{url} stayed {body.get('status')}")


def validate(acme: AcmeTestClient, responder: Http01Server, order: dict[str, Any]) -> None:
    """Answer the http-01 challenge of every authorization of the order and wait for the result."""
    for authz_url in order["authorizations"]:
        challenges = acme.post(authz_url, None).json()["challenges"]
        challenge = next(c for c in challenges if c["type"] == "http-01")
        responder.tokens[challenge["token"]] = f"{challenge['token']}.{acme.thumbprint()}"
        assert acme.post(challenge["url"], {}).status_code == 200
        wait_for(acme, challenge["url"], ("valid", "invalid"))


def issue(
    acme: AcmeTestClient, responder: Http01Server, *names: str, extra: dict[str, Any] | None = None
) -> tuple[dict[str, Any], x509.Certificate]:
    """newOrder (with ``extra`` members), http-01, finalize; the final order and the leaf certificate."""
    identifiers = [{"type": "dns", "value": name} for name in names]
    created = acme.post(acme.directory["newOrder"], {"identifiers": identifiers} | (extra or {}))
    assert created.status_code == 201, created.text
    validate(acme, responder, created.json())
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(csr_pem(*names, key=key).encode()).public_bytes(serialization.Encoding.DER)
    finalized = acme.post(created.json()["finalize"], {"csr": b64url(csr)})
    assert finalized.status_code == 200, finalized.text
    order = finalized.json()
    assert order["status"] == "valid", order
    leaf = x509.load_pem_x509_certificates(acme.post(order["certificate"], None).content)[0]
    return order | {"url": created.headers["Location"]}, leaf
