"""The two loops a server process runs: the leader's periodic tick and the job worker.

``scheduler_loop`` runs in one worker of every server process; the lease row picks one leader among all
replicas, and only the leader recovers stuck jobs and scans for due renewals. ``worker_loop`` runs in
every worker process of every replica: claiming with ``SKIP LOCKED`` spreads the jobs over all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from certctl.domain.jobs import JobType
from certctl.scheduler.leader import LeaderLease, holder_name
from certctl.scheduler.renewal_scan import RenewalScanner
from certctl.scheduler.worker import JobWorker
from certctl.services.container import Services

log = logging.getLogger("certctl.scheduler")
SCAN_INTERVAL = 2.0
"""Seconds between leader ticks: short-lived (minutes) certificates still renew on time."""


async def scheduler_loop(
    services: Services, *, lease: LeaderLease | None = None, interval: float = SCAN_INTERVAL
) -> None:
    lease = lease or LeaderLease(services.context.engine, services.context.clock)
    scanner = RenewalScanner(services.renewals)
    try:
        while True:
            if await lease.hold():
                try:
                    recovered = await services.jobs.recover_expired()
                    result = await scanner.tick(now=services.context.clock.now())
                    await services.notification_producer.tick(now=services.context.clock.now())
                    if recovered or result.created:
                        log.info(
                            "scheduler tick: %d renewal jobs (%d due seen, %.3f s), %d jobs recovered",
                            result.created,
                            result.seen,
                            result.seconds,
                            recovered,
                        )
                except Exception:  # keep leading; the next tick retries
                    log.warning("scheduler tick failed; retrying", exc_info=True)
            await asyncio.sleep(interval)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(lease.release())


def job_worker(services: Services, *, name: str | None = None, concurrency: int = 4) -> JobWorker:
    return JobWorker(
        services.jobs,
        {str(JobType.RENEWAL): services.renewals.run, str(JobType.NOTIFICATION): services.notifications.run},
        name=name or holder_name(),
        concurrency=concurrency,
    )


async def worker_loop(services: Services) -> None:
    await job_worker(services).run_forever()
