"""A claim never takes more than its limit, on either engine (PostgreSQL once re-ran an IN subquery
under FOR UPDATE SKIP LOCKED and handed one worker the whole backlog)."""

from __future__ import annotations

from certctl.domain.jobs import JobType
from certctl.services.jobs import new_job
from certctl.store.db import unit_of_work
from certctl.store.repositories import jobs
from support.apps import ApiHarness


def test_claim_respects_its_limit(api: ApiHarness) -> None:
    services = api.services
    now = services.context.clock.now()

    async def seed() -> None:
        async with unit_of_work(services.context.engine) as uow:
            records = [
                new_job(type=JobType.NOTIFICATION, dedup_key=f"claim-test:{n}", now=now, max_attempts=3)
                for n in range(7)
            ]
            await jobs.enqueue(uow.connection, records)

    api.run(seed)
    taken: list[int] = []
    for _ in range(4):
        claimed = api.run(lambda: services.jobs.claim(worker="w", types=["notification"], limit=2))
        taken.append(len(claimed))
    assert taken == [2, 2, 2, 1]
