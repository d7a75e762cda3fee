"""Secrets never reach the server log, API listings or the audit trail (driven against a real process)."""

from __future__ import annotations

import base64
import re
import ssl

import httpx2

from support.live import LiveServer


def _login_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


def test_no_secret_in_logs_listings_or_audit(live_server: LiveServer) -> None:
    secrets: list[str] = [live_server.admin_key]
    with live_server.client() as client:
        created = client.post("/api/v1/keys", json={"name": "hygiene", "roles": ["operator"]}).json()
        operator_key = created["secret"]
        secrets.append(operator_key)
        issued = client.post(
            "/api/v1/certificates",
            json={"name": "hygiene.example.com", "issuer": "local", "profile": "default",
                  "common_name": "hygiene.example.com"},
        ).json()  # fmt: skip
        key_body = "".join(issued["private_key_pem"].splitlines()[1:-1])
        secrets.append(key_body[20:80])
        password = "p12-password-never-logged"
        secrets.append(password)
        exported = client.post(
            "/api/v1/certificates/hygiene.example.com/export",
            json={"format": "pkcs12", "include_key": True, "password": password},
        )
        assert exported.status_code == 200
        rotated = client.post(f"/api/v1/keys/{created['key']['id']}/rotate").json()["secret"]
        secrets.append(rotated)
        bogus = "cctl_" + base64.urlsafe_b64encode(b"not-a-real-key-but-shaped-like-one").decode().rstrip("=")
        secrets.append(bogus)
        assert client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {bogus}"}).status_code == 401
        listings = client.get("/api/v1/keys").text + client.get("/api/v1/intermediates").text
        audit = client.get("/api/v1/audit/export").text + client.get("/api/v1/audit/export?format=csv").text

    trust = ssl.create_default_context(cafile=str(live_server.ca_bundle))
    with httpx2.Client(base_url=live_server.url, verify=trust) as browser:
        form = browser.get("/login")
        token = _login_token(form.text)
        signed_in = browser.post(
            "/login", data={"csrf_token": token, "api_key": live_server.admin_key, "next": ""}
        )
        assert signed_in.status_code in (200, 303)
        session_cookie = browser.cookies.get("__Host-certctl_session")
        assert session_cookie
        secrets.append(session_cookie)
        wrong = browser.post("/login", data={"csrf_token": token, "api_key": bogus + "x", "next": ""})
        assert wrong.status_code in (401, 403)
        secrets.append(bogus + "x")

    log = live_server.log_file.read_text()
    for secret in secrets:
        assert secret not in log, "a secret reached the server log"
        assert secret not in listings, "a secret reached an API listing"
        assert secret not in audit, "a secret reached the audit trail"
    assert "PRIVATE KEY" not in log + listings + audit
