"""OIDC sign-in in headless Chromium: a real ``certctl server``, a real OpenID Provider (npm
``oidc-provider``) and the browser between them.

The operator configures the provider and a group mapping through the API; the user clicks "Sign in with
…" on the dashboard, fills the provider's login and consent forms and lands on the dashboard with the
mapped role. Then the user signs out at the provider (its end-session page, same browser): the provider
posts a back-channel logout token to the server over HTTPS, and the next dashboard load goes to sign-in.

The server presents the certificate the provider trusts (``rp_cert_file``), so the provider's
back-channel call is verified TLS, as it would be in production.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Response, expect, sync_playwright

from support.live import LiveServer, start_live_server
from support.oidc_provider import OpenIdProvider, openid_provider_fixture

pytestmark = [pytest.mark.browser, pytest.mark.peer("chromium"), pytest.mark.peer("node")]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

openid_provider = openid_provider_fixture(scope="module")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(openid_provider: OpenIdProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``certctl server`` whose HTTPS listener presents the certificate the provider trusts."""
    workdir = tmp_path_factory.mktemp("oidc-live")
    tls = workdir / "data" / "tls"
    tls.mkdir(parents=True)
    shutil.copyfile(openid_provider.rp_ca_file, tls / "ca.crt")
    shutil.copyfile(openid_provider.rp_cert_file, tls / "server.crt")
    shutil.copyfile(openid_provider.rp_key_file, tls / "server.key")
    (tls / "server.key").chmod(0o600)
    started = start_live_server(workdir)
    try:
        yield started
    finally:
        started.stop()


def configure(server: LiveServer, provider: OpenIdProvider) -> dict[str, Any]:
    client_id, client_secret = provider.register_client(
        [server.url + "/auth/oidc/callback"],
        backchannel_logout_uri=server.url + "/auth/oidc/back-channel-logout",
        post_logout_redirect_uris=[server.url + "/login"],
    )
    with server.client() as api:
        created = api.post(
            "/api/v1/auth/oidc/providers",
            json={
                "name": "corp",
                "display_name": "Corp SSO",
                "issuer": provider.issuer,
                "client_id": client_id,
                "client_secret": client_secret,
            },
        )
        assert created.status_code == 201, created.text
        mapped = api.post(
            "/api/v1/auth/oidc/providers/corp/mappings", json={"group": "pki-admins", "role": "admin"}
        )
        assert mapped.status_code == 201, mapped.text
    return {"client_id": client_id}


def audit_actions(server: LiveServer, action: str) -> list[dict[str, Any]]:
    with server.client() as api:
        answer = api.get("/api/v1/audit", params={"action": action})
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items


def sign_in_at_provider(page: Page, login: str) -> None:
    """The provider's development login form, then its consent form."""
    expect(page.locator('input[name="login"]')).to_be_visible()
    page.fill('input[name="login"]', login)
    page.fill('input[name="password"]', "any password")
    page.click('button[type="submit"]')
    consent = page.locator('form input[name="prompt"][value="consent"]')
    consent.wait_for(state="attached")
    page.click('button[type="submit"]')


def test_sign_in_with_the_provider_then_its_back_channel_logout_ends_the_session(
    server: LiveServer, openid_provider: OpenIdProvider, browser: Browser, tmp_path: Path
) -> None:
    registered = configure(server, openid_provider)
    context = browser.new_context(ignore_https_errors=True, base_url=server.url)
    problems: list[str] = []
    ours = urlsplit(server.url).netloc

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and urlsplit(message.location.get("url", "")).netloc == ours:
            problems.append(message.text)

    def on_response(response: Response) -> None:
        if response.status >= 400 and urlsplit(response.url).netloc == ours:
            problems.append(f"{response.status} {response.url}")

    page = context.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", on_response)
    try:
        page.goto("/dashboard")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fdashboard$"))
        page.click("text=Sign in with Corp SSO")
        expect(page).to_have_url(re.compile("^" + re.escape(openid_provider.issuer) + "/"))
        sign_in_at_provider(page, "alice")

        expect(page).to_have_url(re.compile(re.escape(server.url) + r"/dashboard$"))
        expect(page.locator(".who-name")).to_have_text("alice@example.test")
        expect(page.locator(".cards .card")).to_have_count(9)
        page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)
        (login_event,) = audit_actions(server, "auth.oidc.login")
        assert login_event["details"]["groups"] == ["pki-admins"]
        page.reload()
        expect(page.locator(".who-name")).to_have_text("alice@example.test")

        # Sign out at the provider, in the same browser: it confirms, then calls us back-channel.
        page.goto(
            f"{openid_provider.issuer}/session/end?client_id={registered['client_id']}"
            f"&post_logout_redirect_uri={server.url}/login"
        )
        page.click('button[name="logout"][value="yes"]')
        expect(page).to_have_url(re.compile(re.escape(server.url) + r"/login$"))
        (logout_event,) = audit_actions(server, "auth.oidc.backchannel_logout")
        assert logout_event["details"] == {"provider": "corp", "sessions_ended": 1}
        assert "backchannel.success" in openid_provider.log_tail()

        page.goto("/dashboard")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fdashboard$"))
        expect(page.locator("h1")).to_have_text("Sign in to certctl")
    finally:
        context.close()
    assert problems == [], problems
    assert audit_actions(server, "auth.oidc.login_failed") == []
