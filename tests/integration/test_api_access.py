"""API keys, roles and the day-0 bootstrap."""

from __future__ import annotations

from support.apps import BOOTSTRAP_TOKEN, ApiHarness, make_harness

PROBLEM = "urn:certctl:problem:"


def test_key_lifecycle_create_rotate_revoke(api: ApiHarness) -> None:
    created = api.post("/api/v1/keys", json={"name": "ci", "roles": ["operator"], "expires_in_days": 30})
    assert created.status_code == 201, created.text
    secret, key = created.json()["secret"], created.json()["key"]
    assert secret.startswith("cctl_") and "secret_sha256" not in key and key["prefix"] == secret[:12]
    assert api.get("/api/v1/auth/me", key=secret).json()["roles"] == ["operator"]
    listing = api.get("/api/v1/keys").json()["items"]
    assert secret not in str(listing) and all("secret_sha256" not in k for k in listing)
    rotated = api.post(f"/api/v1/keys/{key['id']}/rotate").json()
    assert api.get("/api/v1/auth/me", key=secret).status_code == 401
    assert api.get("/api/v1/auth/me", key=rotated["secret"]).status_code == 200
    assert api.post(f"/api/v1/keys/{key['id']}/revoke").json()["revoked_at"] is not None
    assert api.get("/api/v1/auth/me", key=rotated["secret"]).status_code == 401


def test_unknown_role_and_escalation_are_refused(api: ApiHarness) -> None:
    assert api.post("/api/v1/keys", json={"name": "x", "roles": ["root"]}).status_code == 422
    operator = api.key_for("operator")
    assert api.post("/api/v1/keys", key=operator, json={"name": "x", "roles": ["viewer"]}).status_code == 403


def test_last_admin_cannot_be_revoked(api: ApiHarness) -> None:
    keys = api.get("/api/v1/keys").json()["items"]
    admin = next(k for k in keys if "admin" in k["roles"])
    response = api.post(f"/api/v1/keys/{admin['id']}/revoke")
    assert response.status_code == 409
    assert response.json()["type"] == PROBLEM + "conflict"


def test_roles_decide_what_a_key_can_do(api: ApiHarness) -> None:
    viewer, auditor = api.key_for("viewer"), api.key_for("auditor")
    body = {"name": "v.example.com", "issuer": "local", "profile": "default", "common_name": "v.example.com"}
    assert api.post("/api/v1/certificates", key=viewer, json=body).status_code == 403
    assert api.get("/api/v1/certificates", key=viewer).status_code == 200
    assert api.get("/api/v1/audit", key=viewer).status_code == 403
    assert api.get("/api/v1/certificates", key=auditor).status_code == 403
    assert api.get("/api/v1/audit/export", key=auditor).status_code == 200
    denied = api.get("/api/v1/audit", params={"action": "auth.denied"}).json()["items"]
    assert {row["actor"] for row in denied} >= {"test-viewer", "test-auditor"}


def test_auth_failures_are_audited_without_the_secret(api: ApiHarness) -> None:
    presented = "cctl_" + "A" * 43
    assert api.get("/api/v1/certificates", key=presented).status_code == 401
    assert api.client.get("/api/v1/certificates").status_code == 401
    rows = api.get("/api/v1/audit", params={"action": "auth.failed"}).json()["items"]
    assert len(rows) == 2
    assert presented not in str(rows)


def test_bootstrap_mints_one_admin_then_closes(database_url: str) -> None:
    with make_harness(database_url, seed_admin=False) as harness:
        client = harness.client
        wrong = client.post("/api/v1/auth/bootstrap", json={"token": "wrong-token-wrong-token"})
        assert wrong.status_code == 403
        first = client.post("/api/v1/auth/bootstrap", json={"token": BOOTSTRAP_TOKEN, "name": "day0"})
        assert first.status_code == 201, first.text
        secret = first.json()["secret"]
        me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"}).json()
        assert me["roles"] == ["admin"]
        again = client.post("/api/v1/auth/bootstrap", json={"token": BOOTSTRAP_TOKEN})
        assert again.status_code == 410
        assert again.json()["type"] == PROBLEM + "gone"
        audit = client.get(
            "/api/v1/audit", params={"action": "auth.failed"}, headers={"Authorization": f"Bearer {secret}"}
        ).json()["items"]
        assert audit and BOOTSTRAP_TOKEN not in str(audit) and "wrong-token" not in str(audit)


def test_bootstrap_is_404_when_not_configured(database_url: str) -> None:
    with make_harness(database_url, bootstrap_token=None, seed_admin=False) as harness:
        assert harness.client.post("/api/v1/auth/bootstrap", json={"token": "x"}).status_code == 404
