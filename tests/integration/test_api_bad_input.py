"""Bad input gets the exact 4xx problem and writes nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from support.apps import ApiHarness
from support.csrs import counts, csr_pem, dsa_csr, rsa_key, tampered_csr

PROBLEM = "urn:certctl:problem:"


def _issue(api: ApiHarness, **body: Any) -> Any:
    payload = {"name": "bad.example.com", "issuer": "local", "profile": "default"} | body
    return api.post("/api/v1/certificates", json=payload)


CASES = [
    (
        "malformed CSR",
        {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----"},
        422,
        "bad-csr",
    ),
    ("garbage CSR", {"csr": "hello"}, 422, "bad-csr"),
    ("tampered signature", {"csr": tampered_csr("bad.example.com")}, 422, "bad-csr"),
    ("DSA key", {"csr": dsa_csr("bad.example.com")}, 422, "bad-csr"),
    ("RSA 1024", {"csr": csr_pem("bad.example.com", key=rsa_key(1024))}, 422, "policy-violation"),
    ("TTL over max", {"common_name": "bad.example.com", "validity_days": 398}, 422, "policy-violation"),
    ("unknown field", {"common_name": "bad.example.com", "colour": "blue"}, 422, "validation-error"),
    ("unknown key type", {"common_name": "bad.example.com", "key_type": "rsa-1024"}, 422, "validation-error"),
    ("no names", {}, 422, "validation-error"),
    ("names differ from CSR", {"csr": csr_pem("a.example.com"), "sans": ["b.example.com"]}, 422, "bad-csr"),
    ("unknown profile", {"common_name": "bad.example.com", "profile": "nope"}, 422, "validation-error"),
    ("unknown issuer", {"common_name": "bad.example.com", "issuer": "nope"}, 422, "validation-error"),
    ("bad SAN", {"sans": ["has space.example.com"]}, 422, "validation-error"),
    ("EKU not allowed", {"common_name": "bad.example.com", "ekus": ["codeSigning"]}, 422, "policy-violation"),
]


@pytest.mark.parametrize(("label", "body", "status", "problem"), CASES, ids=[c[0] for c in CASES])
def test_bad_issuance_is_refused_and_writes_nothing(
    api: ApiHarness, label: str, body: dict[str, Any], status: int, problem: str
) -> None:
    before = api.run(lambda: counts(api.services.context.engine))
    response = _issue(api, **body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document = response.json()
    assert document["type"] == PROBLEM + problem
    assert document["status"] == status
    assert document["detail"]
    assert api.run(lambda: counts(api.services.context.engine)) == before


def test_invalid_json_is_400(api: ApiHarness) -> None:
    before = api.run(lambda: counts(api.services.context.engine))
    response = api.post(
        "/api/v1/certificates", content=b'{"name": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["type"] == PROBLEM + "malformed-json"
    assert api.run(lambda: counts(api.services.context.engine)) == before


def test_wrong_content_type_is_415(api: ApiHarness) -> None:
    response = api.post("/api/v1/certificates", content=b"name=x", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["type"] == PROBLEM + "unsupported-media-type"


def test_oversized_body_is_413(api: ApiHarness) -> None:
    before = api.run(lambda: counts(api.services.context.engine))
    huge = {"name": "big.example.com", "issuer": "local", "profile": "default", "csr": "A" * (300 * 1024)}
    response = api.post("/api/v1/certificates", json=huge)
    assert response.status_code == 413
    assert response.json()["type"] == PROBLEM + "payload-too-large"
    assert api.run(lambda: counts(api.services.context.engine)) == before


def test_oversized_chunked_body_is_413(api: ApiHarness) -> None:
    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 8192

    response = api.client.post(
        "/api/v1/certificates",
        content=chunks(),
        headers=api.headers() | {"Content-Type": "application/json"},
    )
    assert response.status_code == 413


def test_duplicate_name_is_409_and_keeps_the_first(api: ApiHarness) -> None:
    assert _issue(api, name="dup.example.com", common_name="dup.example.com").status_code == 201
    before = api.run(lambda: counts(api.services.context.engine))
    response = _issue(api, name="dup.example.com", common_name="dup.example.com")
    assert response.status_code == 409
    assert response.json()["type"] == PROBLEM + "conflict"
    assert api.run(lambda: counts(api.services.context.engine)) == before


def test_bad_cursor_and_sort_are_422(api: ApiHarness) -> None:
    assert (
        api.get("/api/v1/certificates", params={"cursor": "!!!"}).json()["type"]
        == PROBLEM + "validation-error"
    )
    assert api.get("/api/v1/certificates", params={"sort": "secret"}).status_code == 422


def test_unknown_route_is_problem_404(api: ApiHarness) -> None:
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["type"] == PROBLEM + "not-found"
