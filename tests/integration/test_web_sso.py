"""The dashboard's sign-on page on both databases: an admin adds a provider (its secret sealed, never shown
back), maps a group, removes the mapping and disables the provider; every button needs the CSRF token and
``auth.oidc.edit``; a viewer cannot even see the page; bad input gets a 422 page, not a 500. The Sessions
page lists one's own sessions and ends one."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import select

from certctl.store.db import read_only
from certctl.store.repositories import audit as audit_repo
from support.apps import ApiHarness

CSRF = "__Host-certctl_csrf"
SECRET = "client-secret-" + "9f3c1a7e5b2d"


def sign_in(api: ApiHarness, key: str) -> str:
    api.client.cookies.clear()
    page = api.client.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    response = api.client.post(
        "/login", data={"api_key": key, "csrf_token": found.group(1)}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return str(api.client.cookies.get(CSRF))


def post(api: ApiHarness, path: str, token: str | None, **fields: str) -> Any:
    data = ({"csrf_token": token} if token is not None else {}) | fields
    return api.client.post(path, data=data, follow_redirects=False)


def audit_rows(api: ApiHarness) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        async with read_only(api.services.context.engine) as connection:
            return [dict(r) for r in (await connection.execute(select(audit_repo.EVENTS))).mappings()]

    return api.run(load)


def test_admin_manages_providers_and_mappings_from_the_page(api: ApiHarness) -> None:
    token = sign_in(api, api.admin_key)
    page = api.client.get("/sso")
    assert page.status_code == 200 and "/auth/oidc/callback" in page.text
    fields = {
        "name": "corp",
        "issuer": "https://idp.example.test",
        "client_id": "certctl",
        "client_secret": SECRET,
    }
    assert post(api, "/sso/providers", None, **fields).status_code == 403  # no CSRF token
    assert post(api, "/sso/providers", token, **fields).status_code == 303
    page = api.client.get("/sso")
    assert "https://idp.example.test" in page.text and SECRET not in page.text
    assert post(api, "/sso/providers", token, **fields).status_code == 409  # same name again
    bad = post(
        api, "/sso/providers", token, **(fields | {"name": "other", "issuer": "http://idp.example.test"})
    )
    assert bad.status_code == 422 and "https" in bad.text

    assert (
        post(api, "/sso/providers/corp/mappings", token, group="pki-admins", role="admin").status_code == 303
    )
    [mapping] = api.get("/api/v1/auth/oidc/providers/corp/mappings").json()["items"]
    assert mapping["group_name"] == "pki-admins" and mapping["role"] == "admin"
    assert post(api, "/sso/providers/corp/mappings", token, group="x", role="no-such-role").status_code == 422
    assert (
        post(api, "/sso/providers/corp/mappings", token, group="x", role="viewer", scope="bogus").status_code
        == 422
    )
    remove = f"/sso/providers/corp/mappings/{mapping['id']}/remove"
    assert post(api, remove, token).status_code == 303
    assert api.get("/api/v1/auth/oidc/providers/corp/mappings").json()["items"] == []

    assert post(api, "/sso/providers/corp/disable", token).status_code == 303
    assert api.get("/api/v1/auth/oidc/providers/corp").json()["enabled"] is False
    assert post(api, "/sso/providers/corp/sideways", token).status_code == 404
    assert post(api, "/sso/providers/nope/enable", token).status_code == 404
    trail = json.dumps(audit_rows(api), default=str)
    assert SECRET not in trail and "auth.oidc.provider_create" in trail


def test_a_viewer_neither_sees_nor_changes_providers(api: ApiHarness) -> None:
    token = sign_in(api, api.key_for("viewer"))
    assert api.client.get("/sso").status_code == 403
    fields = {"name": "corp", "issuer": "https://idp.example.test", "client_id": "certctl"}
    assert post(api, "/sso/providers", token, **fields).status_code == 403
    assert api.get("/api/v1/auth/oidc/providers").json()["items"] == []


def test_the_sessions_page_lists_and_ends_ones_own_sessions(api: ApiHarness) -> None:
    sign_in(api, api.admin_key)
    first_cookie = str(api.client.cookies.get("__Host-certctl_session"))
    token = sign_in(api, api.admin_key)
    current_cookie = str(api.client.cookies.get("__Host-certctl_session"))
    page = api.client.get("/sessions")
    assert page.status_code == 200
    own = page.text.split('id="own-sessions"')[1].split("</table>")[0]
    handles = re.findall(r'action="/sessions/([0-9a-f]+)/revoke"', own)
    current = re.findall(r'([0-9a-f]{16}) <span class="badge status-active">this one</span>', own)
    assert len(handles) == 2 and len(current) == 1
    [other] = [h for h in handles if h != current[0]]
    assert post(api, f"/sessions/{other}/revoke", None).status_code == 403  # CSRF token required
    assert post(api, f"/sessions/{other}/revoke", token).headers["location"] == "/sessions"
    assert post(api, f"/sessions/{other}/revoke", token).status_code == 404  # already ended
    for cookie, expected in ((first_cookie, 303), (current_cookie, 200)):
        api.client.cookies.clear()
        api.client.cookies.set("__Host-certctl_session", cookie)
        assert api.client.get("/dashboard", follow_redirects=False).status_code == expected
    token = str(api.client.cookies.get(CSRF))  # the page above issued a fresh one: the cookie was gone
    ended = post(api, f"/sessions/{current[0]}/revoke", token)
    assert ended.headers.get("location") == "/login", (ended.status_code, ended.text[:400])
    assert api.client.get("/dashboard", follow_redirects=False).status_code == 303
