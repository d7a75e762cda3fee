"""Scoped and time-bound grants, custom roles, and the escalation guards (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from certctl.store.db import unit_of_work
from certctl.store.models import RoleGrant, table_of
from support.apps import ApiHarness
from support.seed import DEFAULT_RULES

PROBLEM = "urn:certctl:problem:"
GRANTS = table_of(RoleGrant)


def _key(api: ApiHarness, name: str, grants: list[dict[str, Any]]) -> tuple[str, str]:
    """A key with no role, then the given grants. Returns (key id, secret)."""
    created = api.post("/api/v1/keys", json={"name": name, "roles": ["auditor"]})
    assert created.status_code == 201, created.text
    key_id, secret = created.json()["key"]["id"], created.json()["secret"]
    auditor_grant = api.get(f"/api/v1/keys/{key_id}/grants").json()["items"][0]["id"]
    for grant in grants:
        response = api.post(f"/api/v1/keys/{key_id}/grants", json=grant)
        assert response.status_code == 201, response.text
    assert api.delete(f"/api/v1/keys/{key_id}/grants/{auditor_grant}").status_code == 204
    return key_id, secret


def _issue(api: ApiHarness, name: str, profile: str, key: str | None = None) -> Any:
    body = {"name": name, "issuer": "local", "profile": profile, "common_name": name}
    return api.post("/api/v1/certificates", key=key, json=body)


def _two_profiles(api: ApiHarness) -> None:
    assert api.post("/api/v1/profiles", json={"name": "team-b", "rules": DEFAULT_RULES}).status_code == 201
    assert _issue(api, "a.example.com", "default").status_code == 201
    assert _issue(api, "b.example.com", "team-b").status_code == 201


def test_profile_scoped_key_sees_and_acts_only_under_its_profile(api: ApiHarness) -> None:
    _two_profiles(api)
    _, key = _key(api, "team-a", [{"role": "operator", "scope": "profile", "scope_id": "default"}])
    listed = api.get("/api/v1/certificates", key=key).json()["items"]
    assert [c["name"] for c in listed] == ["a.example.com"]
    for path in ("", "/versions", "/export"):
        assert api.get(f"/api/v1/certificates/b.example.com{path}", key=key).status_code == 404
    assert api.get("/api/v1/certificates/a.example.com", key=key).status_code == 200
    assert api.post("/api/v1/certificates/b.example.com/renew", key=key).status_code == 404
    assert api.post("/api/v1/certificates/a.example.com/renew", key=key).status_code == 200
    refused = _issue(api, "b2.example.com", "team-b", key=key)
    assert refused.status_code == 403
    assert refused.json()["type"] == PROBLEM + "forbidden"
    assert _issue(api, "a2.example.com", "default", key=key).status_code == 201
    assert [p["name"] for p in api.get("/api/v1/profiles", key=key).json()["items"]] == ["default"]
    assert api.get("/api/v1/profiles/team-b", key=key).status_code == 404
    assert api.patch("/api/v1/profiles/team-b", key=key, json={"description": "x"}).status_code == 404
    assert api.get("/api/v1/stats", key=key).status_code == 403
    assert api.get("/api/v1/teams", key=key).status_code == 403


def test_issuer_scoped_read_grant(api: ApiHarness) -> None:
    _two_profiles(api)
    _, key = _key(api, "issuer-reader", [{"role": "viewer", "scope": "issuer", "scope_id": "local"}])
    assert len(api.get("/api/v1/certificates", key=key).json()["items"]) == 2
    assert [i["name"] for i in api.get("/api/v1/issuers", key=key).json()["items"]] == ["local"]
    assert api.get("/api/v1/profiles", key=key).json()["items"] == []
    assert _issue(api, "x.example.com", "default", key=key).status_code == 403


def test_expired_grant_stops_working(api: ApiHarness) -> None:
    _two_profiles(api)
    key_id, key = _key(api, "temp", [{"role": "viewer", "expires_in_days": 1}])
    assert api.get("/api/v1/certificates", key=key).status_code == 200
    grant_id = api.get(f"/api/v1/keys/{key_id}/grants").json()["items"][0]["id"]

    async def expire() -> None:
        async with unit_of_work(api.services.context.engine) as uow:
            past = datetime.now(UTC) - timedelta(seconds=1)
            await uow.connection.execute(
                update(GRANTS).where(GRANTS.c.id == grant_id).values(expires_at=past)
            )

    api.run(expire)
    api.services.authenticator.forget()
    assert api.get("/api/v1/certificates", key=key).status_code == 403
    me = api.get("/api/v1/auth/me", key=key).json()
    assert me["grants"] == []
    past = api.post(
        f"/api/v1/keys/{key_id}/grants", json={"role": "viewer", "expires_at": "2020-01-01T00:00:00Z"}
    )
    assert past.status_code == 422


def test_me_shows_grants_and_effective_permissions(api: ApiHarness) -> None:
    _, key = _key(
        api, "mixed", [{"role": "viewer"}, {"role": "operator", "scope": "profile", "scope_id": "default"}]
    )
    me = api.get("/api/v1/auth/me", key=key).json()
    assert {g["role"] for g in me["grants"]} == {"viewer", "operator"}
    assert "cert.read" in me["permissions"]
    assert "cert.issue" in me["scoped_permissions"]
    assert "team.create" not in me["permissions"] + me["scoped_permissions"]


def test_custom_roles_and_escalation_guard(api: ApiHarness) -> None:
    created = api.post(
        "/api/v1/auth/roles",
        json={"name": "key-manager", "permissions": ["auth.key.read", "auth.role.assign", "cert.read"]},
    )
    assert created.status_code == 201, created.text
    assert (
        api.post("/api/v1/auth/roles", json={"name": "reader", "permissions": ["cert.read"]}).status_code
        == 201
    )
    assert (
        api.post("/api/v1/auth/roles", json={"name": "bad", "permissions": ["cert.fly"]}).status_code == 422
    )
    assert api.patch("/api/v1/auth/roles/admin", json={"add": ["cert.read"]}).status_code == 409
    manager_id, manager = _key(api, "manager", [{"role": "key-manager"}])
    target_id, _ = _key(api, "target", [{"role": "reader"}])
    escalate = api.post(f"/api/v1/keys/{target_id}/grants", key=manager, json={"role": "admin"})
    assert escalate.status_code == 403
    assert "cannot grant" in escalate.json()["detail"]
    assert (
        api.post(f"/api/v1/keys/{target_id}/grants", key=manager, json={"role": "viewer"}).status_code == 403
    )
    scoped_reader = {"role": "reader", "scope": "profile", "scope_id": "default"}
    fine = api.post(f"/api/v1/keys/{target_id}/grants", key=manager, json=scoped_reader)
    assert fine.status_code == 201, fine.text
    assert (
        api.post(
            "/api/v1/auth/roles", key=manager, json={"name": "x", "permissions": ["cert.read"]}
        ).status_code
        == 403
    )
    widened = api.patch("/api/v1/auth/roles/reader", json={"add": ["cert.issue"]})
    assert widened.status_code == 200
    assert "cert.issue" in widened.json()["permissions"]
    assert api.delete("/api/v1/auth/roles/reader").status_code == 409
    audit = api.get("/api/v1/audit", params={"action": "auth.role.grant"}).json()["items"]
    by_manager = [a for a in audit if a["actor"] == "manager"]
    assert [a["details"]["role"] for a in by_manager] == ["reader"]
    assert by_manager[0]["details"]["key"] == target_id
    assert manager_id


def test_last_admin_grant_cannot_be_revoked(api: ApiHarness) -> None:
    me = api.get("/api/v1/auth/me").json()
    grants = api.get(f"/api/v1/keys/{me['id']}/grants").json()["items"]
    admin_grant = next(g for g in grants if g["role"] == "admin")
    response = api.delete(f"/api/v1/keys/{me['id']}/grants/{admin_grant['id']}")
    assert response.status_code == 409
    second = api.post("/api/v1/keys", json={"name": "second-admin", "roles": ["admin"]})
    assert second.status_code == 201
    assert api.delete(f"/api/v1/keys/{me['id']}/grants/{admin_grant['id']}").status_code == 204
