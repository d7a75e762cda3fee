"""External account binding (RFC 8555 §7.3.4) and the trusted internal-PKI mode, in-process on both
databases: keys through the REST API, accounts refused or bound, and issuance without challenges."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from starlette.testclient import TestClient

from certctl.api.app import create_app
from certctl.keys.envelope import MasterKey
from certctl.services.acme import AcmeConfig
from certctl.services.audit import SYSTEM
from certctl.services.container import build_services
from certctl.store.db import make_engine
from certctl.store.models import AcmeAccount, AcmeEabKey
from support.acme_client import AcmeTestClient, b64url
from support.csrs import csr_pem
from support.seed import DEFAULT_RULES, seed_minimal

ERR = "urn:ietf:params:acme:error:"
BASE = "https://testserver"
INTERNAL = f"{BASE}/acme/internal/directory"
TRUSTED_RULES = DEFAULT_RULES | {
    "san_patterns": ["*.corp.test"],
    "acme": {"require_eab": True, "validation": "trusted"},
}


@pytest.fixture
def acme_app(database_url: str) -> Iterator[tuple[TestClient, Any, dict[str, str]]]:
    services = build_services(
        engine=make_engine(database_url, pool_size=5),
        master_key=MasterKey(secrets.token_bytes(32)),
        public_http_url="http://127.0.0.1:8080",
        cache_ttl_seconds=0.0,
        acme=AcmeConfig(),
    )
    with TestClient(create_app(services), base_url=BASE) as client:
        assert client.portal is not None
        client.portal.call(seed_minimal, services)
        admin = client.portal.call(
            lambda: services.api_keys.create(name="eab-admin", roles=["admin"], expires_in=None, actor=SYSTEM)
        )
        headers = {"Authorization": f"Bearer {admin.secret}"}
        created = client.post(
            "/api/v1/profiles", json={"name": "internal", "rules": TRUSTED_RULES}, headers=headers
        )
        assert created.status_code == 201, created.text
        try:
            yield client, services, headers
        finally:
            client.portal.call(services.context.engine.dispose)


def _eab_key(client: TestClient, headers: dict[str, str], profile: str = "internal") -> dict[str, Any]:
    response = client.post("/api/v1/acme/eab-keys", json={"profile": profile, "name": "ci"}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _binding(acme: AcmeTestClient, kid: str, hmac_key: str, *, alg: str = "HS256") -> dict[str, str]:
    """The externalAccountBinding JWS: HMAC over the account's public JWK (RFC 8555 §7.3.4)."""
    header = {"alg": alg, "kid": kid, "url": acme.directory["newAccount"]}
    protected = b64url(json.dumps(header).encode())
    payload = b64url(json.dumps(acme.key.as_dict(private=False)).encode())
    secret = base64.urlsafe_b64decode(hmac_key + "=" * (-len(hmac_key) % 4))
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(secret, f"{protected}.{payload}".encode(), digest).digest()
    return {"protected": protected, "payload": payload, "signature": b64url(signature)}


def _register(acme: AcmeTestClient, binding: dict[str, str] | None) -> Any:
    payload: dict[str, Any] = {"termsOfServiceAgreed": True}
    if binding is not None:
        payload["externalAccountBinding"] = binding
    response = acme.post(acme.directory["newAccount"], payload)
    acme.kid = response.headers.get("Location")
    return response


def _count(client: TestClient, services: Any, model: Any) -> int:
    async def count() -> int:
        async with services.context.engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(model))).scalar_one())

    assert client.portal is not None
    return client.portal.call(count)


def test_accounts_need_a_valid_unused_binding(acme_app: tuple[TestClient, Any, dict[str, str]]) -> None:
    client, services, headers = acme_app
    assert client.get(f"{BASE}/acme/directory").json()["meta"]["externalAccountRequired"] is False
    acme = AcmeTestClient(client, INTERNAL)
    assert acme.directory["meta"]["externalAccountRequired"] is True

    refused = _register(acme, None)
    assert (refused.status_code, refused.json()["type"]) == (400, ERR + "externalAccountRequired")
    key = _eab_key(client, headers)
    wrong = _register(acme, _binding(acme, key["kid"], b64url(secrets.token_bytes(32))))
    assert (wrong.status_code, wrong.json()["type"]) == (403, ERR + "unauthorized")
    other = AcmeTestClient(client, INTERNAL)
    stolen = _binding(other, key["kid"], key["hmac_key"])
    assert _register(acme, stolen).json()["type"] == ERR + "unauthorized"
    assert _count(client, services, AcmeAccount) == 0

    bound = _register(acme, _binding(acme, key["kid"], key["hmac_key"], alg="HS512"))
    assert bound.status_code == 201, bound.text
    listed = client.get("/api/v1/acme/eab-keys", params={"profile": "internal"}, headers=headers).json()
    assert [item["kid"] for item in listed["items"]] == [key["kid"]]
    assert listed["items"][0]["account_id"] == acme.kid.rsplit("/", 1)[1]  # type: ignore[union-attr]
    assert "hmac_key" not in listed["items"][0] and "hmac_sealed" not in listed["items"][0]

    reused = _register(other, _binding(other, key["kid"], key["hmac_key"]))
    assert (reused.status_code, reused.json()["type"]) == (403, ERR + "unauthorized")
    revoked_key = _eab_key(client, headers)
    deleted = client.delete(f"/api/v1/acme/eab-keys/{revoked_key['kid']}", headers=headers)
    assert deleted.status_code == 200 and deleted.json()["revoked_at"]
    assert client.delete(f"/api/v1/acme/eab-keys/{revoked_key['kid']}", headers=headers).status_code == 409
    late = _register(other, _binding(other, revoked_key["kid"], revoked_key["hmac_key"]))
    assert (late.status_code, late.json()["type"]) == (403, ERR + "unauthorized")
    elsewhere = _eab_key(client, headers, profile="default")
    cross = _register(other, _binding(other, elsewhere["kid"], elsewhere["hmac_key"]))
    assert cross.json()["type"] == ERR + "unauthorized"
    assert _count(client, services, AcmeAccount) == 1
    assert _count(client, services, AcmeEabKey) == 3


def test_trusted_mode_issues_without_challenges(acme_app: tuple[TestClient, Any, dict[str, str]]) -> None:
    client, _services, headers = acme_app
    acme = AcmeTestClient(client, INTERNAL)
    key = _eab_key(client, headers)
    assert _register(acme, _binding(acme, key["kid"], key["hmac_key"])).status_code == 201

    outside = acme.new_order("www.example.test")
    assert (outside.status_code, outside.json()["type"]) == (400, ERR + "rejectedIdentifier")
    created = acme.new_order("app.corp.test")
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["status"] == "ready"
    authz = acme.post(order["authorizations"][0], None).json()
    assert authz["status"] == "valid" and authz["challenges"] == []

    csr = x509.load_pem_x509_csr(csr_pem("app.corp.test").encode()).public_bytes(serialization.Encoding.DER)
    finalized = acme.post(order["finalize"], {"csr": b64url(csr)})
    assert finalized.status_code == 200, finalized.text
    assert finalized.json()["status"] == "valid"
    leaf = x509.load_pem_x509_certificates(acme.post(finalized.json()["certificate"], None).content)[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["app.corp.test"]

    unbound = AcmeTestClient(client, f"{BASE}/acme/default/directory")
    assert unbound.register().status_code == 201
    unbound.directory = acme.directory
    refused = unbound.new_order("app.corp.test")
    assert (refused.status_code, refused.json()["type"]) == (403, ERR + "unauthorized")


def test_trusted_validation_needs_require_eab(acme_app: tuple[TestClient, Any, dict[str, str]]) -> None:
    client, _services, headers = acme_app
    rules = DEFAULT_RULES | {"acme": {"validation": "trusted"}}
    refused = client.post("/api/v1/profiles", json={"name": "loose", "rules": rules}, headers=headers)
    assert refused.status_code == 422
    missing = client.post("/api/v1/acme/eab-keys", json={"profile": "nope"}, headers=headers)
    assert missing.status_code == 422
