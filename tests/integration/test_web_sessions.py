"""The dashboard over the real app and database: sign-in, cookies, CSRF, revocation, permissions, pages."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pytest
from sqlalchemy import select

from certctl.store.db import read_only
from certctl.store.repositories import audit, rows
from support.apps import ApiHarness

SESSION = "__Host-certctl_session"
CSRF = "__Host-certctl_csrf"
LOGIN = "__Host-certctl_login"
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


def form_token(api: ApiHarness) -> str:
    page = api.client.get("/login")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def sign_in(api: ApiHarness, key: str, **extra: str) -> Any:
    data = {"api_key": key, "csrf_token": form_token(api), **extra}
    return api.client.post("/login", data=data, follow_redirects=False)


def audit_events(api: ApiHarness, action: str) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        async with read_only(api.services.context.engine) as connection:
            return await audit.list_events(connection, audit.AuditQuery(action=action))

    return api.run(load)


def session_rows(api: ApiHarness) -> list[dict[str, Any]]:
    async def load() -> list[dict[str, Any]]:
        async with read_only(api.services.context.engine) as connection:
            return [dict(r) for r in (await connection.execute(select(rows.SESSIONS))).mappings()]

    return api.run(load)


def cookie_line(response: Any, name: str) -> str:
    every: list[str] = response.headers.get_list("set-cookie")
    lines = [line for line in every if line.startswith(f"{name}=")]
    assert len(lines) == 1, every
    return lines[0]


def issue(api: ApiHarness, name: str) -> dict[str, Any]:
    body = {"name": name, "issuer": "local", "profile": "default", "common_name": name}
    response = api.post("/api/v1/certificates", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def row_names(html: str) -> list[str]:
    return re.findall(r'<td><a href="/certificates/[^"]+">([^<]+)</a></td>', html)


def test_anonymous_visitors_are_sent_to_sign_in(api: ApiHarness) -> None:
    root = api.client.get("/", follow_redirects=False)
    assert root.status_code == 303
    assert root.headers["location"] == "/login"
    page = api.client.get("/certificates?status=Active", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fcertificates%3Fstatus%3DActive"
    login = api.client.get("/login")
    assert login.headers["content-security-policy"] == CSP
    assert "<script>" not in login.text and "style=" not in login.text
    line = cookie_line(login, LOGIN)
    assert "HttpOnly" in line and "Secure" in line and "SameSite=Strict" in line


def test_a_bad_key_is_refused_and_audited_without_the_key(api: ApiHarness) -> None:
    bad_key = "cctl_" + "Zq9" * 14
    response = sign_in(api, bad_key)
    assert response.status_code == 401
    assert "not accepted" in response.text
    assert '<form method="post" action="/login"' in response.text
    assert SESSION not in response.headers.get("set-cookie", "")
    assert bad_key not in response.text
    events = audit_events(api, "web.login_failed")
    assert len(events) == 1
    assert events[0]["outcome"] == "failure"
    assert events[0]["body_sha256"] == ""
    stored = json.dumps(events[0], default=str)
    assert bad_key not in stored and bad_key[:12] not in stored
    assert session_rows(api) == []


def test_the_sign_in_form_needs_its_double_submit_token(api: ApiHarness) -> None:
    form_token(api)
    response = api.client.post(
        "/login", data={"api_key": api.admin_key, "csrf_token": "forged"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert SESSION not in response.headers.get("set-cookie", "")
    api.client.cookies.clear()
    response = api.client.post(
        "/login", data={"api_key": api.admin_key, "csrf_token": "x"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert session_rows(api) == []


def test_sign_in_sets_host_only_secure_cookies_and_stores_only_digests(api: ApiHarness) -> None:
    response = sign_in(api, api.admin_key)
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    session_line = cookie_line(response, SESSION)
    csrf_line = cookie_line(response, CSRF)
    for line in (session_line, csrf_line):
        assert line.startswith("__Host-")
        assert "; Secure" in line and "; SameSite=Strict" in line and "; Path=/" in line
        assert "domain=" not in line.lower()
        assert "Max-Age=28800" in line
    assert "; HttpOnly" in session_line
    assert "HttpOnly" not in csrf_line
    token = session_line.split(";")[0].split("=", 1)[1]
    csrf = csrf_line.split(";")[0].split("=", 1)[1]
    [stored] = session_rows(api)
    session_id, key_id, mac = token.split(".")
    assert len(session_id) >= 43 and key_id and mac
    assert stored["id"] == hashlib.sha256(session_id.encode()).hexdigest()
    assert stored["csrf_sha256"] == hashlib.sha256(csrf.encode()).hexdigest()
    assert token not in json.dumps(stored, default=str)
    assert (stored["expires_at"] - stored["created_at"]).total_seconds() == 8 * 3600
    [event] = audit_events(api, "web.login")
    assert event["actor"] == "test-admin" and event["actor_type"] == "web_session"
    assert api.admin_key not in json.dumps(event, default=str)


def test_the_session_survives_a_fresh_request(api: ApiHarness) -> None:
    sign_in(api, api.admin_key)
    for _ in range(2):
        page = api.client.get("/dashboard")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["cache-control"] == "no-store"
        assert "test-admin" in page.text
        assert f'<meta name="csrf-token" content="{api.client.cookies.get(CSRF)}">' in page.text
    assert api.client.get("/login", follow_redirects=False).headers["location"] == "/dashboard"


@pytest.mark.parametrize("carrier", ["form", "header"])
def test_sign_out_needs_the_csrf_token(api: ApiHarness, carrier: str) -> None:
    sign_in(api, api.admin_key)
    refused = api.client.post("/logout", follow_redirects=False)
    assert refused.status_code == 403
    wrong = api.client.post("/logout", data={"csrf_token": "not-it"}, follow_redirects=False)
    assert wrong.status_code == 403
    assert api.client.get("/dashboard").status_code == 200
    token = api.client.cookies.get(CSRF)
    assert token
    if carrier == "form":
        done = api.client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    else:
        done = api.client.post("/logout", headers={"X-CSRF-Token": token}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"] == "/login"
    assert "Max-Age=0" in cookie_line(done, SESSION)
    assert session_rows(api) == []
    assert len(audit_events(api, "web.logout")) == 1
    assert api.client.get("/dashboard", follow_redirects=False).status_code == 303


def test_a_lost_csrf_cookie_is_replaced_and_the_old_token_stops_working(api: ApiHarness) -> None:
    sign_in(api, api.admin_key)
    old = api.client.cookies.get(CSRF)
    api.client.cookies.delete(CSRF)
    page = api.client.get("/dashboard")
    fresh = cookie_line(page, CSRF).split(";")[0].split("=", 1)[1]
    assert fresh != old
    assert f'<meta name="csrf-token" content="{fresh}">' in page.text
    for token, status in ((old or "", 403), (fresh, 303)):
        response = api.client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
        assert response.status_code == status


def test_htmx_requests_without_a_session_are_redirected_by_header(api: ApiHarness) -> None:
    response = api.client.get("/certificates?q=x", headers={"HX-Request": "true"}, follow_redirects=False)
    assert response.status_code == 204
    assert response.headers["hx-redirect"] == "/login?next=%2Fcertificates%3Fq%3Dx"


def test_an_old_cookie_replayed_after_sign_out_is_dead(api: ApiHarness) -> None:
    sign_in(api, api.admin_key)
    token = api.client.cookies.get(SESSION)
    api.client.post("/logout", data={"csrf_token": api.client.cookies.get(CSRF)})
    api.client.cookies.clear()
    api.client.cookies.set(SESSION, token or "")
    assert api.client.get("/dashboard", follow_redirects=False).status_code == 303


def test_revoking_the_key_ends_its_sessions(api: ApiHarness) -> None:
    viewer = api.key_for("viewer")
    key_id = api.get("/api/v1/auth/me", key=viewer).json()["id"]
    assert sign_in(api, viewer).status_code == 303
    assert api.client.get("/dashboard").status_code == 200
    assert api.post(f"/api/v1/keys/{key_id}/revoke").status_code == 200
    after = api.client.get("/dashboard", follow_redirects=False)
    assert after.status_code == 303
    assert after.headers["location"].startswith("/login")
    assert session_rows(api) == []
    assert sign_in(api, viewer).status_code == 401


def test_a_session_without_cert_read_sees_a_403_page(api: ApiHarness) -> None:
    assert sign_in(api, api.key_for("auditor")).status_code == 303
    for path in ("/certificates", "/dashboard", "/certificates/anything"):
        page = api.client.get(path, follow_redirects=False)
        assert page.status_code == 403
        assert "text/html" in page.headers["content-type"]
        assert "cert.read" in page.text
        assert "Sign out" in page.text
        assert page.headers["content-security-policy"] == CSP


def test_dashboard_list_and_detail_show_the_inventory(api: ApiHarness) -> None:
    issued = issue(api, "web.example.com")
    issue(api, "api.example.com")
    issue(api, "zeta.example.com")
    sign_in(api, api.admin_key)

    overview = api.client.get("/dashboard")
    assert overview.status_code == 200
    assert '<svg class="timeline"' in overview.text
    assert re.search(
        r'status-active" href="/certificates\?status=Active">\s*<span class="card-count">3<', overview.text
    )
    assert "web.example.com" in overview.text

    listing = api.client.get("/certificates")
    assert listing.status_code == 200
    assert row_names(listing.text) == ["api.example.com", "web.example.com", "zeta.example.com"]
    assert 'hx-trigger="keyup changed delay:300ms, search"' in listing.text
    assert row_names(api.client.get("/certificates?sort=-name").text) == [
        "zeta.example.com",
        "web.example.com",
        "api.example.com",
    ]
    assert row_names(api.client.get("/certificates?q=WEB").text) == ["web.example.com"]
    assert row_names(api.client.get("/certificates?status=Expired").text) == []
    assert "No certificates match" in api.client.get("/certificates?status=Expired").text
    issuer_id = issued["issuer_id"]
    assert len(row_names(api.client.get(f"/certificates?issuer={issuer_id}&environment=").text)) == 3
    stale = api.client.get("/certificates?cursor=not-a-cursor")
    assert stale.status_code == 200 and "no longer valid" in stale.text

    fragment = api.client.get("/certificates?q=zeta", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text
    assert row_names(fragment.text) == ["zeta.example.com"]
    assert 'id="pager" class="pager" aria-label="Pages" hx-swap-oob="true"' in fragment.text

    detail = api.client.get(f"/certificates/{issued['id']}")
    assert detail.status_code == 200
    version = issued["current_version"]
    assert "-----BEGIN CERTIFICATE-----" in detail.text
    serial = ":".join(version["serial"].upper()[i : i + 2] for i in range(0, len(version["serial"]), 2))
    assert serial in detail.text
    fingerprint = version["fingerprint_sha256"].upper()
    assert ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)) in detail.text
    assert "Version history" in detail.text and "Current" in detail.text
    assert api.client.get("/certificates/web.example.com").status_code == 200
    missing = api.client.get("/certificates/crt_missing")
    assert missing.status_code == 404 and "crt_missing" in missing.text


def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(api: ApiHarness) -> None:
    back = sign_in(api, api.admin_key, next="/certificates?status=Active")
    assert back.headers["location"] == "/certificates?status=Active"
    api.client.cookies.clear()
    for target in ("https://evil.example/", "//evil.example/x", "/api/v1/keys", "/\\evil.example"):
        api.client.cookies.clear()
        assert sign_in(api, api.admin_key, next=target).headers["location"] == "/dashboard"


def test_static_files_are_served_and_pages_stay_out_of_the_api_schema(api: ApiHarness) -> None:
    script = api.client.get("/static/htmx.min.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "htmx" in script.text[:200]
    style = api.client.get("/static/certctl.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert api.client.get("/static/VENDORED.md").status_code == 404
    assert api.client.get("/static/..%2Fsessions.py").status_code == 404
    paths = api.client.get("/api/v1/openapi.json").json()["paths"]
    assert not any(p in paths for p in ("/", "/login", "/logout", "/dashboard", "/certificates"))


def test_the_approvals_page_lists_pending_requests_first_then_decisions(api: ApiHarness) -> None:
    gated = {"name": "gated", "rules": {"requires_approval": True}}
    assert api.post("/api/v1/profiles", json=gated).status_code == 201
    approver = api.post("/api/v1/keys", json={"name": "approver", "roles": ["admin"]}).json()["secret"]
    held_ids = []
    for name in ("first.example.com", "second.example.com"):
        body = {"name": name, "issuer": "local", "profile": "gated", "common_name": name}
        response = api.post("/api/v1/certificates", json=body)
        assert response.status_code == 202, response.text
        held_ids.append(response.json()["approval"]["id"])
    rejected = api.post(f"/api/v1/approvals/{held_ids[0]}/reject", key=approver, json={"note": "not ours"})
    assert rejected.status_code == 200

    assert sign_in(api, api.key_for("viewer")).status_code == 303
    page = api.client.get("/approvals")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert "<script>" not in page.text and "style=" not in page.text
    assert '<a href="/approvals" aria-current="page">Approvals</a>' in page.text
    pending, decided = page.text.split('id="decided-approvals"')
    assert held_ids[1] in pending and held_ids[0] not in pending
    assert "second.example.com" in pending and "test-admin" in pending and "Issue certificate" in pending
    assert "status-pending" in pending
    assert held_ids[0] in decided and "not ours" in decided and "approver" in decided
    assert "status-revoked" in decided and ">rejected<" in decided
    assert 'href="/approvals"' in api.client.get("/dashboard").text

    role = {"name": "cert-reader", "permissions": ["cert.read"]}
    assert api.post("/api/v1/auth/roles", json=role).status_code == 201
    reader = api.post("/api/v1/keys", json={"name": "reader", "roles": ["cert-reader"]}).json()["secret"]
    api.client.cookies.clear()
    assert sign_in(api, reader).status_code == 303
    refused = api.client.get("/approvals")
    assert refused.status_code == 403 and "approval.read" in refused.text
    assert 'href="/approvals"' not in api.client.get("/dashboard").text
