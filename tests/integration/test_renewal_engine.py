"""Renewal engine on both engines: due times, the scan (racing too), the worker, recovery, backoff."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text

from certctl.domain.renewal import Backoff, RenewalPolicy, renewal_due_at
from certctl.scheduler.leader import LeaderLease
from certctl.scheduler.renewal_scan import RenewalScanner
from certctl.scheduler.runner import job_worker
from certctl.services.jobs import JobService
from certctl.services.renewals import RenewalService
from certctl.store.db import make_engine
from certctl.store.models import Job, table_of
from support.apps import ApiHarness
from support.renewals import freeze, issue

JOBS = table_of(Job)


def certificate(api: ApiHarness, certificate_id: str) -> dict[str, Any]:
    found = api.get(f"/api/v1/certificates/{certificate_id}")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def jobs_of(api: ApiHarness) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        async with api.services.context.engine.connect() as connection:
            rows = await connection.execute(select(JOBS).order_by(JOBS.c.created_at, JOBS.c.id))
            return [dict(row) for row in rows.mappings()]

    return api.run(read)


def scan(api: ApiHarness, now: datetime) -> int:
    return api.run(lambda: RenewalScanner(api.services.renewals, page_size=3).tick(now=now)).created


def test_certificates_become_due_exactly_when_the_policy_says(api: ApiHarness) -> None:
    clock = freeze(api)
    lifetimes = [timedelta(days=90), timedelta(days=47), timedelta(hours=6), timedelta(minutes=15)]
    issued = [issue(api, f"age-{n}", lifetime) for n, lifetime in enumerate(lifetimes)]
    issue(api, "manual", timedelta(minutes=15), auto_renew=False)
    dues = {}
    for record in issued:
        assert record["renewal_due_at"] == renewal_due_at(
            not_before=clock.at - timedelta(minutes=1),
            not_after=record["not_after"],
            policy=RenewalPolicy(),
            certificate_id=record["id"],
        )
        dues[record["id"]] = record["renewal_due_at"]
    assert scan(api, clock.at) == 0
    for certificate_id, due in sorted(dues.items(), key=lambda item: item[1]):
        assert scan(api, due - timedelta(microseconds=1)) == 0
        assert scan(api, due) == 1
        assert certificate(api, certificate_id)["status"] == "RenewalInProgress"
    far = clock.at + timedelta(days=400)
    assert scan(api, far) == 0, "one job per version, however often the scan runs"
    jobs = jobs_of(api)
    assert sorted(j["certificate_id"] for j in jobs) == sorted(dues)
    assert {j["dedup_key"] for j in jobs} == {f"renewal:{r['id']}:{r['current_version_id']}" for r in issued}


def test_two_racing_scanners_create_one_job_per_due_certificate(api: ApiHarness) -> None:
    clock = freeze(api)
    for n in range(24):
        issue(api, f"race-{n}", timedelta(minutes=30))
    later = clock.at + timedelta(minutes=25)

    async def race() -> list[int]:
        other_engine = make_engine(api.database_url, pool_size=2)
        other_context = dataclasses.replace(api.services.context, engine=other_engine)
        other = RenewalService(other_context, api.services.issuance)
        try:
            results = await asyncio.gather(
                RenewalScanner(api.services.renewals, page_size=5).tick(now=later),
                RenewalScanner(other, page_size=5).tick(now=later),
            )
        finally:
            await other_engine.dispose()
        return [r.created for r in results]

    created = api.run(race)
    assert sum(created) == 24
    jobs = jobs_of(api)
    assert len(jobs) == 24
    assert len({j["certificate_id"] for j in jobs}) == 24


def test_the_worker_renews_once_and_a_second_run_is_harmless(api: ApiHarness) -> None:
    clock = freeze(api)
    records = [issue(api, f"renew-{n}", timedelta(days=90)) for n in range(3)]
    clock.at += timedelta(days=61)
    assert scan(api, clock.at) == 3
    worker = job_worker(api.services, name="w1", concurrency=2)
    while api.run(worker.run_once):
        pass
    jobs = jobs_of(api)
    assert {j["status"] for j in jobs} == {"succeeded"}
    assert {j["result"]["outcome"] for j in jobs} == {"renewed"}
    for record in records:
        now = certificate(api, record["id"])
        assert now["status"] == "Active"
        assert now["current_version_id"] != record["current_version_id"]
        assert datetime.fromisoformat(now["renewal_due_at"]) > record["renewal_due_at"] + timedelta(days=50)
        versions = api.get(f"/api/v1/certificates/{record['id']}/versions").json()
        assert len(versions["items"] if isinstance(versions, dict) else versions) == 2
    again = api.run(lambda: api.services.renewals.run(jobs[0]))
    assert again["outcome"] == "superseded"
    versions = api.get(f"/api/v1/certificates/{jobs[0]['certificate_id']}/versions").json()
    assert len(versions["items"] if isinstance(versions, dict) else versions) == 2


def test_a_job_stuck_running_is_recovered_and_run_once(api: ApiHarness) -> None:
    clock = freeze(api)
    record = issue(api, "stuck", timedelta(minutes=15))
    clock.at += timedelta(minutes=11)
    assert scan(api, clock.at) == 1
    claimed = api.run(lambda: api.services.jobs.claim(worker="crashed", types=["renewal"], limit=5))
    assert len(claimed) == 1 and claimed[0]["status"] == "running"
    assert api.run(api.services.jobs.recover_expired) == 0, "the lease is still valid"
    clock.at += api.services.jobs.lease + timedelta(seconds=1)
    assert api.run(api.services.jobs.recover_expired) == 1
    (job,) = jobs_of(api)
    assert job["status"] == "pending" and job["attempts"] == 1 and "lease expired" in job["last_error"]
    assert api.run(lambda: api.services.jobs.succeed(job=job, worker="crashed", result={})) is False
    assert api.run(job_worker(api.services, name="w2").run_once) == 1
    (job,) = jobs_of(api)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert certificate(api, record["id"])["current_version_id"] != record["current_version_id"]


def test_failures_back_off_then_end_failed(api: ApiHarness) -> None:
    clock = freeze(api)
    record = issue(api, "doomed", timedelta(minutes=15))
    api.services.jobs = JobService(
        api.services.context, backoff=Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=15))
    )
    api.services.renewals.max_attempts = 3
    clock.at += timedelta(minutes=11)
    assert scan(api, clock.at) == 1

    async def disable_issuer() -> None:
        async with api.services.context.engine.begin() as connection:
            await connection.execute(text("UPDATE issuers SET enabled = false"))

    api.run(disable_issuer)
    worker = job_worker(api.services, name="w3")
    for attempt, delay in ((1, 10), (2, 15)):
        assert api.run(worker.run_once) == 1
        (job,) = jobs_of(api)
        assert job["status"] == "pending" and job["attempts"] == attempt
        assert job["run_after"] == clock.at + timedelta(seconds=delay)
        assert "disabled" in job["last_error"]
        assert api.run(worker.run_once) == 0, "not before its backoff has passed"
        clock.at += timedelta(seconds=delay)
    assert api.run(worker.run_once) == 1
    (job,) = jobs_of(api)
    assert job["status"] == "failed" and job["attempts"] == 3
    assert certificate(api, record["id"])["status"] == "Failed"
    assert scan(api, clock.at + timedelta(days=1)) == 0


def test_leader_lease_is_exclusive_and_taken_over_after_expiry(api: ApiHarness) -> None:
    clock = freeze(api)
    ttl = timedelta(seconds=15)
    first = LeaderLease(api.services.context.engine, clock, holder="a", ttl=ttl)
    second = LeaderLease(api.services.context.engine, clock, holder="b", ttl=ttl)
    assert api.run(first.hold) is True
    assert api.run(second.hold) is False
    clock.at += timedelta(seconds=10)
    assert api.run(first.hold) is True, "the leader renews its lease"
    clock.at += timedelta(seconds=10)
    assert api.run(second.hold) is False, "renewed 10 s ago, still valid"
    clock.at += timedelta(seconds=6)
    assert api.run(second.hold) is True, "a silent leader is replaced after one lease period"
    assert api.run(first.hold) is False
    api.run(second.release)
    assert api.run(first.hold) is True, "a released lease is free at once"

    async def count() -> int:
        async with api.services.context.engine.connect() as connection:
            rows = await connection.execute(text("SELECT count(*) FROM scheduler_leases"))
            return int(rows.scalar_one())

    assert api.run(count) == 1
