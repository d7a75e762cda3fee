"""``GET /metrics`` reports the job queue (SQLite and PostgreSQL): gauges counted from the database at scrape
time, and the outcomes of the jobs this process's worker ran."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from certctl.domain.jobs import JobType
from certctl.domain.notifications import Event, EventType, Severity
from certctl.scheduler.renewal_scan import RenewalScanner
from certctl.scheduler.runner import job_worker
from certctl.services.jobs import new_job
from certctl.store.db import unit_of_work
from certctl.store.repositories import jobs as job_queue
from support.apps import ApiHarness
from support.receivers import free_port
from support.renewals import freeze, issue

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(api: ApiHarness) -> Samples:
    response = api.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def jobs(samples: Samples, kind: str, status: str) -> float:
    return samples[("certctl_jobs", (("status", status), ("type", kind)))]


def outcomes(samples: Samples, kind: str, outcome: str) -> float:
    return samples[("certctl_job_outcomes_total", (("outcome", outcome), ("type", kind)))]


def dead_letters(samples: Samples) -> float:
    return samples[("certctl_notification_dead_letters", ())]


async def enqueue_validation(api: ApiHarness) -> None:
    """One job of a type this test's worker does not run, to be held as running by another worker."""
    job = new_job(
        type=JobType.VALIDATION,
        dedup_key="metrics:validation",
        now=api.services.context.clock.now(),
        max_attempts=3,
    )
    async with unit_of_work(api.services.context.engine) as uow:
        await job_queue.enqueue(uow.connection, [job])


def drain(api: ApiHarness) -> None:
    worker = job_worker(api.services, name="metrics-worker")
    while api.run(worker.run_once):
        pass


def test_queue_gauges_and_outcome_counters_follow_the_jobs(api: ApiHarness) -> None:
    clock = freeze(api)
    empty = scrape(api)
    for kind in ("renewal", "notification", "issuance", "deployment", "validation"):
        for status in ("pending", "running", "failed"):
            assert jobs(empty, kind, status) == 0
    assert dead_letters(empty) == 0

    for n in range(3):
        issue(api, f"metered-{n}", timedelta(days=90))
    dead = api.post(
        "/api/v1/notifications/channels",
        json={
            "name": "dead",
            "type": "slack",
            "secrets": {"webhook_url": f"http://127.0.0.1:{free_port()}/x"},
        },
    )
    assert dead.status_code == 201, dead.text
    rule = api.post("/api/v1/notifications/rules", json={"name": "all", "channel_ids": [dead.json()["id"]]})
    assert rule.status_code == 201, rule.text
    api.services.notifications.max_attempts = 2
    events = [
        Event(
            type=EventType.TEST,
            severity=Severity.INFO,
            key=f"metrics:{n}",
            title="t",
            summary="s",
            occurred_at=clock.at,
        )
        for n in range(2)
    ]
    assert api.run(lambda: api.services.notifications.emit(events)) == 2
    clock.at += timedelta(days=61)
    assert api.run(lambda: RenewalScanner(api.services.renewals).tick(now=clock.at)).created == 3
    api.run(lambda: enqueue_validation(api))
    claimed = api.run(lambda: api.services.jobs.claim(worker="elsewhere", types=["validation"], limit=1))
    assert len(claimed) == 1

    queued = scrape(api)
    assert jobs(queued, "renewal", "pending") == 3
    assert jobs(queued, "validation", "running") == 1
    assert jobs(queued, "validation", "pending") == 0
    assert jobs(queued, "notification", "pending") == 2
    assert dead_letters(queued) == 0

    before = queued
    drain(api)
    after_first = scrape(api)
    assert jobs(after_first, "renewal", "pending") == 0
    assert jobs(after_first, "validation", "running") == 1, "the job claimed elsewhere is still running"
    assert jobs(after_first, "notification", "pending") == 2, "failed once, waiting to be retried"
    assert outcomes(after_first, "renewal", "succeeded") - outcomes(before, "renewal", "succeeded") == 3
    assert outcomes(after_first, "notification", "retried") - outcomes(before, "notification", "retried") == 2
    assert outcomes(after_first, "notification", "failed") == outcomes(before, "notification", "failed")

    clock.at += timedelta(minutes=5)
    drain(api)
    final = scrape(api)
    assert jobs(final, "notification", "pending") == 0
    assert jobs(final, "notification", "failed") == 2
    assert dead_letters(final) == 2
    assert outcomes(final, "notification", "failed") - outcomes(before, "notification", "failed") == 2
    assert outcomes(final, "notification", "succeeded") == outcomes(before, "notification", "succeeded")

    [delivery] = api.get("/api/v1/notifications/deliveries", params={"status": "failed", "limit": 1}).json()[
        "items"
    ]
    assert api.post(f"/api/v1/notifications/deliveries/{delivery['id']}/requeue").status_code == 200
    requeued = scrape(api)
    assert dead_letters(requeued) == 1
    assert jobs(requeued, "notification", "pending") == 1


def test_metrics_need_the_metrics_permission(api: ApiHarness) -> None:
    assert api.get("/metrics", key=api.key_for("auditor")).status_code == 403
    assert api.get("/metrics", key=api.key_for("viewer")).status_code == 200
