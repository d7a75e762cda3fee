"""The dashboard in headless Chromium against a real ``certctl server``: sign in, browse, search, sign out.

Also proves the strict Content-Security-Policy holds in a real browser: any blocked script or style, or
any script error, shows up on the console and fails the test.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from support.live import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.peer("chromium")]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def issue_certificates(live_server: LiveServer, names: list[str]) -> None:
    with live_server.client() as client:
        for name in names:
            body = {"name": name, "issuer": "local", "profile": "default", "common_name": name}
            response = client.post("/api/v1/certificates", json=body)
            assert response.status_code == 201, response.text


def sign_in(page: Page, key: str) -> None:
    expect(page.locator("h1")).to_have_text("Sign in to certctl")
    page.fill("#api_key", key)
    page.click("form.stack button[type=submit]")


def test_sign_in_browse_search_and_sign_out(
    live_server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    marker = secrets.token_hex(3)
    names = [f"shop-{marker}.example.com", f"mail-{marker}.example.com", f"vpn-{marker}.example.com"]
    issue_certificates(live_server, names)

    context = browser.new_context(ignore_https_errors=True, base_url=live_server.url)
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    page = context.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        page.goto("/dashboard")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fdashboard$"))
        sign_in(page, live_server.admin_key)

        expect(page).to_have_url(re.compile(r"/dashboard$"))
        expect(page.locator(".who-name")).to_have_text("live-admin")
        expect(page.locator(".cards .card")).to_have_count(9)
        expect(page.locator(".card.status-active .card-count")).not_to_have_text("0")
        expect(page.locator("svg.timeline")).to_be_visible()
        expect(page.locator("svg.timeline rect")).to_have_count(14)
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

        page.reload()
        expect(page).to_have_url(re.compile(r"/dashboard$"))
        expect(page.locator(".who-name")).to_have_text("live-admin")

        page.click(".mainnav >> text=Certificates")
        expect(page).to_have_url(re.compile(r"/certificates$"))
        expect(page.locator("#cert-rows tr").first).to_be_visible()
        search = page.locator('input[name="q"]')
        search.press_sequentially(f"mail-{marker}", delay=40)
        rows = page.locator("#cert-rows tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(f"mail-{marker}.example.com")
        expect(page).to_have_url(re.compile(rf"q=mail-{marker}"))

        page.click(f"#cert-rows >> text=mail-{marker}.example.com")
        expect(page.locator("h1")).to_contain_text(f"mail-{marker}.example.com")
        expect(page.locator("pre.pem").first).to_contain_text("-----BEGIN CERTIFICATE-----")
        expect(page.locator("#versions-title")).to_be_visible()

        page.click(".who button[type=submit]")
        expect(page).to_have_url(re.compile(r"/login$"))
        page.goto("/dashboard")
        expect(page).to_have_url(re.compile(r"/login\?next="))
    finally:
        context.close()
    assert problems == [], problems
