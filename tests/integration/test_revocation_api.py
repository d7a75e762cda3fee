"""Revocation over the API: one, many, bad input, scopes, and the CRLs it publishes (both engines)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import func, select

from certctl.services.crls import CrlService
from certctl.store.models import AuditEvent, CertificateVersion, CrlState
from support.apps import ApiHarness
from support.seed import DEFAULT_RULES

PROBLEM = "urn:certctl:problem:"


def issue(api: ApiHarness, name: str, profile: str = "default", key: str | None = None) -> dict[str, Any]:
    body = {"name": name, "issuer": "local", "profile": profile, "common_name": name}
    response = api.post("/api/v1/certificates", key=key, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def revocation_counts(api: ApiHarness) -> tuple[int, int]:
    """(revoked versions, certificate.revoke audit rows): what a refused request must leave unchanged."""

    async def count() -> tuple[int, int]:
        async with api.services.context.engine.connect() as connection:
            versions = await connection.execute(
                select(func.count())
                .select_from(CertificateVersion)
                .where(CertificateVersion.revoked_at.is_not(None))
            )
            events = await connection.execute(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "certificate.revoke")
            )
            return int(versions.scalar_one()), int(events.scalar_one())

    return api.run(count)


def fetch_crl(api: ApiHarness, ca_id: str, suffix: str = ".crl") -> x509.CertificateRevocationList:
    response = api.client.get(f"/crl/{ca_id}{suffix}")
    assert response.status_code == 200, response.text
    return x509.load_der_x509_crl(response.content)


def test_revoke_sets_status_audits_and_publishes_a_crl(api: ApiHarness) -> None:
    issued = issue(api, "gone.example.com")
    serial = int(issued["current_version"]["serial"], 16)
    response = api.post(
        "/api/v1/certificates/gone.example.com/revoke",
        json={"reason": "keyCompromise", "invalidity_date": "2026-01-02T03:04:05Z"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "Revoked" and body["auto_renew"] is False
    assert body["revocation"]["reason"] == "keyCompromise"
    version = api.get("/api/v1/certificates/gone.example.com").json()["current_version"]
    assert version["revocation_reason"] == "keyCompromise"
    assert version["invalidity_date"].startswith("2026-01-02T03:04:05")
    events = api.get("/api/v1/audit", params={"action": "certificate.revoke"}).json()["items"]
    assert [e["resource_id"] for e in events] == [issued["id"]]

    issuing = api.seeded["issuing"]
    crl = fetch_crl(api, issuing["id"])
    ca_cert = x509.load_pem_x509_certificate(issuing["cert_pem"].encode())
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    entry = crl.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    assert (
        entry.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc.year == 2026
    )
    assert crl.issuer == ca_cert.subject
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.full_name == [
        x509.UniformResourceIdentifier(f"http://127.0.0.1:8080/crl/{issuing['id']}.crl")
    ]
    delta = fetch_crl(api, issuing["id"], "-delta.crl")
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert indicator.critical and indicator.value.crl_number <= number
    assert delta.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == number + 1
    assert delta.get_revoked_certificate_by_serial_number(serial) is not None


def test_crl_numbers_increase_and_http_caching(api: ApiHarness) -> None:
    ca_id = api.seeded["issuing"]["id"]
    first = api.client.get(f"/crl/{ca_id}.crl")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/pkix-crl"
    assert first.headers["cache-control"].startswith("public, max-age=")
    assert 0 < int(first.headers["cache-control"].rpartition("=")[2]) <= 3600
    assert first.headers["last-modified"].endswith("GMT")
    cached = api.client.get(f"/crl/{ca_id}.crl", headers={"If-None-Match": first.headers["etag"]})
    assert cached.status_code == 304 and cached.content == b""
    issue(api, "n1.example.com")
    assert (
        api.post("/api/v1/certificates/n1.example.com/revoke", json={"reason": "superseded"}).status_code
        == 200
    )
    after = api.client.get(f"/crl/{ca_id}.crl", headers={"If-None-Match": first.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != first.headers["etag"]
    numbers = [
        x509.load_der_x509_crl(r.content).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        for r in (first, after)
    ]
    assert numbers[1] > numbers[0]
    pem = api.client.get(f"/crl/{ca_id}.pem")
    assert pem.status_code == 200 and pem.text.startswith("-----BEGIN X509 CRL-----")
    assert x509.load_pem_x509_crl(pem.content).public_bytes(x509_encoding()) == after.content


def x509_encoding() -> Any:
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def test_unknown_crl_files_are_404(api: ApiHarness) -> None:
    for path in ("/crl/ca_nope.crl", "/crl/.crl", "/crl/x.txt", f"/crl/{api.seeded['issuing']['id']}"):
        response = api.client.get(path)
        assert response.status_code == 404, path
        assert response.json()["type"] == PROBLEM + "not-found"


BAD = [
    (
        "unknown reason",
        "/api/v1/certificates/bad.example.com/revoke",
        {"reason": "lostIt"},
        422,
        "validation-error",
    ),
    (
        "hold refused",
        "/api/v1/certificates/bad.example.com/revoke",
        {"reason": "certificateHold"},
        422,
        "validation-error",
    ),
    (
        "naive date",
        "/api/v1/certificates/bad.example.com/revoke",
        {"invalidity_date": "2026-01-01T00:00:00"},
        422,
        "validation-error",
    ),
    (
        "future date",
        "/api/v1/certificates/bad.example.com/revoke",
        {"invalidity_date": "2999-01-01T00:00:00Z"},
        422,
        "validation-error",
    ),
    (
        "unknown field",
        "/api/v1/certificates/bad.example.com/revoke",
        {"colour": "red"},
        422,
        "validation-error",
    ),
    (
        "unknown certificate",
        "/api/v1/certificates/nope.example.com/revoke",
        {"reason": "superseded"},
        404,
        "not-found",
    ),
    (
        "bulk without selection",
        "/api/v1/certificates/revoke",
        {"reason": "superseded"},
        422,
        "validation-error",
    ),
    ("bulk empty filter", "/api/v1/certificates/revoke", {"filter": {}}, 422, "validation-error"),
    (
        "bulk ids and filter",
        "/api/v1/certificates/revoke",
        {"ids": ["x"], "filter": {"source": "api"}},
        422,
        "validation-error",
    ),
    (
        "bulk unknown issuer",
        "/api/v1/certificates/revoke",
        {"filter": {"issuer": "nope"}},
        422,
        "validation-error",
    ),
]


@pytest.mark.parametrize(("label", "path", "body", "status", "problem"), BAD, ids=[b[0] for b in BAD])
def test_bad_revocations_are_refused_and_write_nothing(
    api: ApiHarness, label: str, path: str, body: dict[str, Any], status: int, problem: str
) -> None:
    issue(api, "bad.example.com")
    before = revocation_counts(api)
    response = api.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == PROBLEM + problem
    assert revocation_counts(api) == before
    assert api.get("/api/v1/certificates/bad.example.com").json()["status"] != "Revoked"


def test_revoking_twice_is_409_and_keeps_the_first_reason(api: ApiHarness) -> None:
    issue(api, "twice.example.com")
    assert (
        api.post("/api/v1/certificates/twice.example.com/revoke", json={"reason": "superseded"}).status_code
        == 200
    )
    before = revocation_counts(api)
    again = api.post("/api/v1/certificates/twice.example.com/revoke", json={"reason": "keyCompromise"})
    assert again.status_code == 409
    assert again.json()["type"] == PROBLEM + "conflict"
    assert revocation_counts(api) == before
    version = api.get("/api/v1/certificates/twice.example.com").json()["current_version"]
    assert version["revocation_reason"] == "superseded"


def _scoped_key(api: ApiHarness, profile: str) -> str:
    created = api.post("/api/v1/keys", json={"name": f"scoped-{profile}", "roles": ["auditor"]})
    key_id, secret = created.json()["key"]["id"], created.json()["secret"]
    auditor = api.get(f"/api/v1/keys/{key_id}/grants").json()["items"][0]["id"]
    grant = {"role": "operator", "scope": "profile", "scope_id": profile}
    assert api.post(f"/api/v1/keys/{key_id}/grants", json=grant).status_code == 201
    assert api.delete(f"/api/v1/keys/{key_id}/grants/{auditor}").status_code == 204
    return str(secret)


def test_scoped_key_revokes_only_inside_its_scope(api: ApiHarness) -> None:
    assert api.post("/api/v1/profiles", json={"name": "team-b", "rules": DEFAULT_RULES}).status_code == 201
    issue(api, "a.example.com")
    issue(api, "b.example.com", profile="team-b")
    key = _scoped_key(api, "default")
    before = revocation_counts(api)
    outside = api.post("/api/v1/certificates/b.example.com/revoke", key=key, json={"reason": "superseded"})
    assert outside.status_code == 404
    bulk = api.post(
        "/api/v1/certificates/revoke", key=key, json={"ids": ["b.example.com"], "reason": "superseded"}
    )
    assert bulk.status_code == 200 and bulk.json()["not_found"] == ["b.example.com"]
    by_filter = api.post("/api/v1/certificates/revoke", key=key, json={"filter": {"issuer": "local"}})
    assert by_filter.json()["revoked"] == 1
    assert revocation_counts(api)[0] == before[0] + 1
    assert api.get("/api/v1/certificates/b.example.com").json()["status"] != "Revoked"
    assert api.get("/api/v1/certificates/a.example.com").json()["status"] == "Revoked"
    viewer = api.key_for("viewer")
    assert api.post("/api/v1/certificates/a.example.com/revoke", key=viewer, json={}).status_code == 403


def test_bulk_revoke_by_filter_pages_and_resumes(api: ApiHarness) -> None:
    for index in range(7):
        issue(api, f"bulk{index}.example.com")
    first = api.post(
        "/api/v1/certificates/revoke",
        json={"filter": {"profile": "default"}, "reason": "cessationOfOperation", "limit": 3},
    ).json()
    assert first["revoked"] == 3 and first["next_cursor"]
    assert first["crls_published"] == [api.seeded["issuing"]["id"]]
    rest = api.post(
        "/api/v1/certificates/revoke",
        json={
            "filter": {"profile": "default"},
            "reason": "cessationOfOperation",
            "cursor": first["next_cursor"],
        },
    ).json()
    assert rest["revoked"] == 4 and rest["next_cursor"] is None
    again = api.post("/api/v1/certificates/revoke", json={"filter": {"profile": "default"}}).json()
    assert again["revoked"] == 0
    by_ids = api.post("/api/v1/certificates/revoke", json={"ids": ["bulk0.example.com", "nope"]}).json()
    assert by_ids["already_revoked"] == 1 and by_ids["not_found"] == ["nope"]
    crl = fetch_crl(api, api.seeded["issuing"]["id"])
    assert len(crl) == 7


def test_periodic_job_publishes_for_every_signing_ca_and_clears_stale(api: ApiHarness) -> None:
    crls = api.services.crls

    async def two_replicas_at_once() -> list[str]:
        first, second = await asyncio.gather(crls.refresh_due(), crls.refresh_due())
        return first + second

    done = api.run(two_replicas_at_once)
    assert sorted(done) == sorted([api.seeded["root"]["id"], api.seeded["issuing"]["id"]])
    assert api.run(api.services.crls.refresh_due) == []

    async def states() -> list[Any]:
        async with api.services.context.engine.connect() as connection:
            return list((await connection.execute(select(CrlState.stale_since))).scalars())

    assert api.run(states) == [None, None]
    root_crl = fetch_crl(api, api.seeded["root"]["id"])
    assert len(root_crl) == 0


def test_a_crl_published_by_another_worker_is_served_after_the_cache_window(api: ApiHarness) -> None:
    ca_id = api.seeded["issuing"]["id"]
    first = fetch_crl(api, ca_id).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    other_worker = CrlService(api.services.context, api.services.ca_cache, api.services.crls.schedule)
    full, _ = api.run(lambda: other_worker.regenerate(ca_id))
    assert full.number > first
    served = fetch_crl(api, ca_id).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert served == full.number
