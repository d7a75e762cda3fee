"""The dashboard's Jobs and Notifications pages over the real app and database (SQLite and PostgreSQL):
sign-in redirects, permissions per role, CSRF on the Cancel and Requeue buttons, and what the pages show."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from certctl.domain.jobs import JobType
from certctl.domain.notifications import Event, EventType, Severity
from certctl.scheduler.renewal_scan import RenewalScanner
from certctl.scheduler.runner import job_worker
from certctl.services.jobs import new_job
from certctl.store.db import unit_of_work
from certctl.store.repositories import jobs as job_queue
from support.apps import ApiHarness
from support.receivers import free_port, http_receiver
from support.renewals import freeze, issue

CSRF = "__Host-certctl_csrf"
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


def sign_in(api: ApiHarness, key: str) -> str:
    """A fresh dashboard session for ``key``; returns its CSRF token."""
    api.client.cookies.clear()
    page = api.client.get("/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    response = api.client.post(
        "/login", data={"api_key": key, "csrf_token": found.group(1)}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    token = api.client.cookies.get(CSRF)
    assert token
    return str(token)


def post(api: ApiHarness, path: str, token: str | None) -> Any:
    data = {"csrf_token": token} if token is not None else {}
    return api.client.post(path, data=data, follow_redirects=False)


def renewal_jobs(api: ApiHarness, count: int) -> list[dict[str, Any]]:
    """``count`` pending renewal jobs (their certificates RenewalInProgress)."""
    clock = freeze(api)
    for n in range(count):
        issue(api, f"queued-{n}", timedelta(days=90))
    clock.at += timedelta(days=61)
    assert api.run(lambda: RenewalScanner(api.services.renewals).tick(now=clock.at)).created == count
    listed = api.get("/api/v1/jobs", params={"type": "renewal"}).json()["items"]
    assert len(listed) == count
    found: list[dict[str, Any]] = listed
    return found


def job_status(api: ApiHarness, job_id: str) -> str:
    return str(api.get(f"/api/v1/jobs/{job_id}").json()["status"])


def test_signed_out_visitors_are_sent_to_sign_in(api: ApiHarness) -> None:
    for page in ("/jobs", "/jobs/job_x", "/notifications"):
        response = api.client.get(page, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=%2F")
    cancel = api.client.post("/jobs/job_x/cancel", follow_redirects=False)
    assert cancel.status_code == 303 and cancel.headers["location"] == "/login?next=%2Fjobs%2Fjob_x"
    requeue = api.client.post("/notifications/deliveries/job_x/requeue", follow_redirects=False)
    assert requeue.status_code == 303 and requeue.headers["location"] == "/login?next=%2Fnotifications"


def test_the_jobs_list_filters_pages_and_shows_a_job(api: ApiHarness) -> None:
    jobs = renewal_jobs(api, 3)
    sign_in(api, api.admin_key)
    page = api.client.get("/jobs")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert '<a href="/jobs" aria-current="page">Jobs</a>' in page.text
    assert '<a href="/notifications">Notifications</a>' in page.text
    assert all(job["id"] in page.text for job in jobs)
    assert page.text.count('<span class="badge status-pending">pending</span>') == 3
    assert "No jobs match these filters." in api.client.get("/jobs?type=notification").text
    assert "No jobs match these filters." in api.client.get("/jobs?status=failed").text
    lenient = api.client.get("/jobs?type=bogus&status=nope")
    assert lenient.status_code == 200 and all(job["id"] in lenient.text for job in jobs)
    stale = api.client.get("/jobs?cursor=not-a-cursor")
    assert stale.status_code == 200 and "no longer valid" in stale.text

    detail = api.client.get(f"/jobs/{jobs[0]['id']}")
    assert detail.status_code == 200
    assert "0 of 8" in detail.text and "No error recorded." in detail.text
    assert f'action="/jobs/{jobs[0]["id"]}/cancel"' in detail.text
    assert api.client.get("/jobs/job_missing").status_code == 404


def test_the_jobs_list_pages_fifty_at_a_time(api: ApiHarness) -> None:
    now = api.services.context.clock.now()
    records = [
        new_job(
            type=JobType.VALIDATION, dedup_key=f"paging:{n}", now=now + timedelta(seconds=n), max_attempts=1
        )
        for n in range(52)
    ]

    async def enqueue() -> None:
        async with unit_of_work(api.services.context.engine) as uow:
            await job_queue.enqueue(uow.connection, records)

    api.run(enqueue)
    sign_in(api, api.admin_key)
    first = api.client.get("/jobs?type=validation")
    rows = re.findall(r'<td class="mono"><a href="/jobs/(job_[^"]+)">', first.text)
    assert len(rows) == 50
    found = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert found is not None and "type=validation" in found.group(1)
    second = api.client.get(found.group(1).replace("&amp;", "&"))
    rest = re.findall(r'<td class="mono"><a href="/jobs/(job_[^"]+)">', second.text)
    assert len(rest) == 2 and not set(rest) & set(rows)
    assert 'rel="next"' not in second.text and "← First page" in second.text
    assert {record["id"] for record in records} == set(rows) | set(rest)


def test_cancel_needs_the_csrf_token_and_job_cancel(api: ApiHarness) -> None:
    jobs = renewal_jobs(api, 2)
    target = jobs[0]
    token = sign_in(api, api.key_for("viewer"))
    viewer_page = api.client.get(f"/jobs/{target['id']}")
    assert viewer_page.status_code == 200 and "/cancel" not in viewer_page.text
    denied = post(api, f"/jobs/{target['id']}/cancel", token)
    assert denied.status_code == 403 and "job.cancel" in denied.text
    assert job_status(api, target["id"]) == "pending"

    token = sign_in(api, api.admin_key)
    for forged in (None, "forged-token"):
        refused = post(api, f"/jobs/{target['id']}/cancel", forged)
        assert refused.status_code == 403 and "Request refused" in refused.text
    assert job_status(api, target["id"]) == "pending"
    done = post(api, f"/jobs/{target['id']}/cancel", token)
    assert done.status_code == 303 and done.headers["location"] == f"/jobs/{target['id']}"
    assert job_status(api, target["id"]) == "cancelled"
    certificate = api.get(f"/api/v1/certificates/{target['certificate_id']}").json()
    assert certificate["status"] == "Expiring", "a cancelled renewal puts the certificate back"
    [event] = api.get("/api/v1/audit", params={"action": "job.cancel"}).json()["items"]
    assert event["actor"] == "test-admin" and event["actor_type"] == "web_session"
    again = post(api, f"/jobs/{target['id']}/cancel", token)
    assert again.status_code == 409 and "cancelled" in again.text
    assert post(api, "/jobs/job_missing/cancel", token).status_code == 404
    assert "/cancel" not in api.client.get(f"/jobs/{target['id']}").text


def test_roles_without_the_read_permissions_are_refused(api: ApiHarness) -> None:
    created = api.post("/api/v1/auth/roles", json={"name": "cert-reader", "permissions": ["cert.read"]})
    assert created.status_code == 201, created.text
    key = api.post("/api/v1/keys", json={"name": "reader", "roles": ["cert-reader"]}).json()["secret"]
    sign_in(api, key)
    overview = api.client.get("/dashboard")
    assert overview.status_code == 200
    assert 'href="/jobs"' not in overview.text and 'href="/notifications"' not in overview.text
    jobs = api.client.get("/jobs")
    assert jobs.status_code == 403 and "job.read" in jobs.text
    notifications = api.client.get("/notifications")
    assert notifications.status_code == 403 and "notification.read" in notifications.text
    sign_in(api, api.key_for("auditor"))
    for page in ("/jobs", "/notifications"):
        response = api.client.get(page)
        assert response.status_code == 403 and "cert.read" in response.text


def test_notifications_show_channels_dead_letters_and_requeue(api: ApiHarness) -> None:
    clock = freeze(api)
    with http_receiver() as receiver:
        good = api.post(
            "/api/v1/notifications/channels",
            json={"name": "team-chat", "type": "slack", "secrets": {"webhook_url": f"{receiver.url}/slack"}},
        ).json()["id"]
        dead = api.post(
            "/api/v1/notifications/channels",
            json={
                "name": "dead-hook",
                "type": "slack",
                "secrets": {"webhook_url": f"http://127.0.0.1:{free_port()}/x"},
            },
        ).json()["id"]
        api.post(
            "/api/v1/notifications/channels",
            json={"name": "quiet", "type": "slack", "secrets": {"webhook_url": f"{receiver.url}/q"}},
        )
        assert (
            api.post(
                "/api/v1/notifications/rules", json={"name": "all", "channel_ids": [good, dead]}
            ).status_code
            == 201
        )
        api.services.notifications.max_attempts = 1
        event = Event(
            type=EventType.TEST,
            severity=Severity.INFO,
            key="web:1",
            title="Hello from the queue",
            summary="s",
            occurred_at=clock.at,
        )
        assert api.run(lambda: api.services.notifications.emit([event])) == 2
        worker = job_worker(api.services, name="web-worker")
        while api.run(worker.run_once):
            pass
    failed = api.get("/api/v1/notifications/deliveries", params={"status": "failed"}).json()["items"]
    [dead_letter] = failed
    assert dead_letter["channel_id"] == dead

    token = sign_in(api, api.key_for("viewer"))
    page = api.client.get("/notifications")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    channels = page.text.split('id="channels"')[1].split("</table>")[0]
    assert re.search(r"team-chat</td>.*?status-active\">succeeded", channels, re.S)
    assert re.search(r"dead-hook</td>.*?status-failed\">failed", channels, re.S)
    assert re.search(r"quiet</td>.*?No recent delivery", channels, re.S)
    dead_table = page.text.split('id="dead-letters"')[1].split("</table>")[0]
    assert dead_letter["id"] in dead_table and "Hello from the queue" in dead_table
    assert "/requeue" not in page.text, "no Requeue button without notification.edit"
    denied = post(api, f"/notifications/deliveries/{dead_letter['id']}/requeue", token)
    assert denied.status_code == 403 and "notification.edit" in denied.text

    token = sign_in(api, api.admin_key)
    page = api.client.get("/notifications")
    assert f'action="/notifications/deliveries/{dead_letter["id"]}/requeue"' in page.text
    refused = post(api, f"/notifications/deliveries/{dead_letter['id']}/requeue", None)
    assert refused.status_code == 403 and "Request refused" in refused.text
    assert api.get(f"/api/v1/jobs/{dead_letter['id']}").json()["status"] == "failed"
    done = post(api, f"/notifications/deliveries/{dead_letter['id']}/requeue", token)
    assert done.status_code == 303 and done.headers["location"] == "/notifications"
    assert api.get(f"/api/v1/jobs/{dead_letter['id']}").json()["status"] == "pending"
    [event_row] = api.get("/api/v1/audit", params={"action": "notification.requeue"}).json()["items"]
    assert event_row["actor_type"] == "web_session"
    assert "No dead letters." in api.client.get("/notifications").text
    again = post(api, f"/notifications/deliveries/{dead_letter['id']}/requeue", token)
    assert again.status_code == 409
