"""The Jobs and Notifications pages in headless Chromium against a real ``certctl server``: a delivery to a
dead channel shows up in the queue with its error, is cancelled from its page (CSRF-protected form), and
the channel shows that last delivery. Script errors and blocked resources fail the test (strict CSP)."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from support.live import LiveServer, free_port

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


def created(response: httpx2.Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def failing_delivery(client: httpx2.Client, marker: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A revocation routed (by team, so no other test's events) to a channel nobody listens on; returns
    (channel, the delivery job once its first attempt has failed)."""
    team = created(client.post("/api/v1/teams", json={"name": f"e2e-{marker}"}))
    channel = created(
        client.post(
            "/api/v1/notifications/channels",
            json={
                "name": f"unreachable-{marker}",
                "type": "slack",
                "secrets": {"webhook_url": f"http://127.0.0.1:{free_port()}/hook"},
            },
        )
    )
    created(
        client.post(
            "/api/v1/notifications/rules",
            json={
                "name": f"e2e-{marker}",
                "event_types": ["certificate.revoked"],
                "channel_ids": [channel["id"]],
                "team_id": team["id"],
            },
        )
    )
    name = f"revoked-{marker}.example.com"
    certificate = created(
        client.post(
            "/api/v1/certificates",
            json={
                "name": name,
                "issuer": "local",
                "profile": "default",
                "common_name": name,
                "team": team["id"],
            },
        )
    )
    revoked = client.post(f"/api/v1/certificates/{certificate['id']}/revoke", json={"reason": "superseded"})
    assert revoked.status_code == 200, revoked.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = client.get("/api/v1/jobs", params={"type": "notification", "certificate": certificate["id"]})
        for job in listed.json()["items"]:
            if job["attempts"] >= 1 and job["last_error"] and job["status"] == "pending":
                return channel, job
        time.sleep(0.3)
    raise AssertionError("the delivery to the unreachable channel was not attempted")


def sign_in(page: Page, key: str) -> None:
    expect(page.locator("h1")).to_have_text("Sign in to certctl")
    page.fill("#api_key", key)
    page.click("form.stack button[type=submit]")


def test_jobs_and_notifications_pages(live_server: LiveServer, browser: Browser, tmp_path: Path) -> None:
    marker = secrets.token_hex(3)
    with live_server.client() as client:
        channel, job = failing_delivery(client, marker)

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
        page.goto("/jobs")
        expect(page).to_have_url(re.compile(r"/login\?next=%2Fjobs$"))
        sign_in(page, live_server.admin_key)
        expect(page).to_have_url(re.compile(r"/jobs$"))
        expect(page.locator(".mainnav a[aria-current=page]")).to_have_text("Jobs")

        page.select_option("select[name=type]", "notification")
        page.click("#filter-form button[type=submit]")
        expect(page).to_have_url(re.compile(r"/jobs\?type=notification&status=$"))
        row = page.locator("#job-rows tr", has_text=job["id"])
        expect(row).to_have_count(1)
        expect(row).to_contain_text("could not reach the receiver")
        page.screenshot(path=str(tmp_path / "jobs.png"), full_page=True)

        row.locator(f"a[href='/jobs/{job['id']}']").click()
        expect(page.locator("h1")).to_contain_text("Notification job")
        expect(page.locator("#job-error")).to_contain_text("ConnectError")
        page.click("#cancel-form button[type=submit]")
        expect(page).to_have_url(re.compile(rf"/jobs/{job['id']}$"))
        expect(page.locator("#job-status")).to_have_text("cancelled")
        expect(page.locator("#cancel-form")).to_have_count(0)

        page.click(".mainnav >> text=Notifications")
        expect(page).to_have_url(re.compile(r"/notifications$"))
        channel_row = page.locator("#channels tr", has_text=channel["name"])
        expect(channel_row).to_contain_text("cancelled")
        expect(page.locator("#dead-letters")).to_be_visible()
        expect(page.locator("#deliveries tr", has_text=job["id"])).to_contain_text("cancelled")
        page.screenshot(path=str(tmp_path / "notifications.png"), full_page=True)
    finally:
        context.close()
        with live_server.client() as client:
            client.patch(f"/api/v1/notifications/channels/{channel['id']}", json={"enabled": False})
    assert problems == [], problems
