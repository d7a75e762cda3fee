"""``/api/v1/jobs``: filters, cursor paging, read, cancel (and what cancel does to the certificate)."""

from __future__ import annotations

from datetime import timedelta

from certctl.scheduler.renewal_scan import RenewalScanner
from support.apps import ApiHarness
from support.renewals import freeze, issue


def test_list_filter_page_read_and_cancel(api: ApiHarness) -> None:
    clock = freeze(api)
    records = [issue(api, f"job-{n}", timedelta(days=90)) for n in range(3)]
    clock.at += timedelta(days=61)
    api.run(lambda: RenewalScanner(api.services.renewals).tick(now=clock.at))

    listed = api.get("/api/v1/jobs", params={"type": "renewal", "status": "pending", "limit": 2})
    assert listed.status_code == 200
    first = listed.json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = api.get("/api/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    ids = {j["id"] for j in first["items"] + rest["items"]}
    assert len(ids) == 3
    mine = api.get("/api/v1/jobs", params={"certificate": records[0]["id"]}).json()["items"]
    assert [j["certificate_id"] for j in mine] == [records[0]["id"]]
    assert api.get("/api/v1/jobs", params={"status": "failed"}).json()["items"] == []

    job = api.get(f"/api/v1/jobs/{mine[0]['id']}")
    assert job.status_code == 200 and job.json()["dedup_key"].startswith("renewal:")
    cancelled = api.post(f"/api/v1/jobs/{mine[0]['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    certificate = api.get(f"/api/v1/certificates/{records[0]['id']}").json()
    assert certificate["status"] == "Expiring" and certificate["renewal_due_at"] is None
    again = api.post(f"/api/v1/jobs/{mine[0]['id']}/cancel")
    assert again.status_code == 409
    assert again.json()["type"] == "urn:certctl:problem:conflict"
    assert api.get("/api/v1/jobs", params={"status": "cancelled"}).json()["items"][0]["id"] == mine[0]["id"]
    audit = api.get("/api/v1/audit", params={"action": "job.cancel"}).json()
    assert any(event["resource_id"] == mine[0]["id"] for event in audit["items"])


def test_bad_input_and_permissions(api: ApiHarness) -> None:
    missing = api.get("/api/v1/jobs/job_nope")
    assert missing.status_code == 404 and missing.json()["type"] == "urn:certctl:problem:not-found"
    assert api.post("/api/v1/jobs/job_nope/cancel").status_code == 404
    bad = api.get("/api/v1/jobs", params={"status": "done"})
    assert bad.status_code == 422 and bad.json()["type"] == "urn:certctl:problem:validation-error"
    assert api.get("/api/v1/jobs", params={"type": "coffee"}).status_code == 422
    assert api.get("/api/v1/jobs", params={"cursor": "!!"}).status_code == 422
    assert api.get("/api/v1/jobs", key=api.key_for("auditor")).status_code == 403
    assert api.client.get("/api/v1/jobs").status_code == 401
