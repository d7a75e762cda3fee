"""The job worker: claims due jobs under a lease, runs their handlers, and records the outcome.

Each server worker process runs one. While a batch runs, a heartbeat extends the lease every third of
its length, so only a worker that stopped (crash, SIGKILL, lost database) lets its jobs expire and be
recovered. Handlers are idempotent (CONVENTIONS §8): a recovered job run a second time does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from certctl.domain.jobs import JobStatus
from certctl.errors import CertctlError
from certctl.observability.metrics import count_job_outcome
from certctl.services.jobs import JobService

log = logging.getLogger("certctl.scheduler")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""Runs one claimed job and returns its result (stored as JSON); raises to fail the attempt."""


class JobWorker:
    def __init__(
        self,
        jobs: JobService,
        handlers: Mapping[str, Handler],
        *,
        name: str,
        concurrency: int = 4,
        poll_interval: float = 1.0,
    ) -> None:
        self._jobs = jobs
        self._handlers = dict(handlers)
        self.name = name
        self.concurrency = concurrency
        self.poll_interval = poll_interval

    async def run_once(self) -> int:
        """Claim up to ``concurrency`` jobs of the types this worker handles and run them; returns how
        many were claimed."""
        types = sorted(self._handlers)
        claimed = await self._jobs.claim(worker=self.name, types=types, limit=self.concurrency)
        if not claimed:
            return 0
        beat = asyncio.create_task(self._heartbeat([job["id"] for job in claimed]))
        try:
            await asyncio.gather(*(self._run(job) for job in claimed))
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        return len(claimed)

    async def run_forever(self) -> None:
        while True:
            try:
                claimed = await self.run_once()
            except Exception:  # keep serving; the next poll retries
                log.warning("job worker %s: poll failed; retrying", self.name, exc_info=True)
                claimed = 0
            if claimed < self.concurrency:
                await asyncio.sleep(self.poll_interval)

    async def _run(self, job: dict[str, Any]) -> None:
        handler = self._handlers[job["type"]]
        try:
            result = await handler(job)
        except CertctlError as exc:
            await self._fail(job, f"{exc.title}: {exc.message}")
        except Exception as exc:
            log.warning("job %s (%s) raised", job["id"], job["type"], exc_info=True)
            await self._fail(job, f"{type(exc).__name__}: {exc}")
        else:
            if await self._jobs.succeed(job=job, worker=self.name, result=result):
                count_job_outcome(type=job["type"], outcome="succeeded")
            else:
                log.info("job %s ended after it was cancelled or recovered; not recorded", job["id"])

    async def _fail(self, job: dict[str, Any], error: str) -> None:
        status = await self._jobs.fail(job=job, worker=self.name, error=error)
        log.info("job %s attempt %s failed (%s): %s", job["id"], job["attempts"], status, error)
        if status is not None:
            outcome = "failed" if status == JobStatus.FAILED else "retried"
            count_job_outcome(type=job["type"], outcome=outcome)

    async def _heartbeat(self, job_ids: list[str]) -> None:
        interval = self._jobs.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._jobs.heartbeat(worker=self.name, job_ids=job_ids)
            except Exception:
                log.warning("job worker %s: heartbeat failed", self.name, exc_info=True)
