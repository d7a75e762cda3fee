"""The renewal scan: every few seconds the leader turns due certificates into renewal jobs.

The scan walks the ``renewal_due_at`` index a page at a time (never loading all certificates) and stops
after ``max_pages`` so one tick stays short; what is left is picked up on the next tick. It is
idempotent: a certificate version gets one job however many scanners run or race (dedup key).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from certctl.services.renewals import RenewalService

DEFAULT_PAGE_SIZE = 1000
DEFAULT_MAX_PAGES = 100


@dataclass(frozen=True)
class ScanResult:
    seen: int
    created: int
    pages: int
    seconds: float
    complete: bool
    """False when the tick stopped at ``max_pages`` with due rows left for the next tick."""


class RenewalScanner:
    def __init__(
        self,
        renewals: RenewalService,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> None:
        self._renewals = renewals
        self.page_size = page_size
        self.max_pages = max_pages

    async def tick(self, *, now: datetime) -> ScanResult:
        """One scan: every certificate due at ``now`` (up to the page budget) gets its renewal job."""
        started = time.perf_counter()
        seen = created = pages = 0
        after: tuple[datetime, str] | None = None
        while pages < self.max_pages:
            page = await self._renewals.enqueue_due_page(now=now, after=after, limit=self.page_size)
            pages += 1
            seen += page.seen
            created += page.created
            after = page.next_after
            if after is None:
                break
        return ScanResult(
            seen=seen,
            created=created,
            pages=pages,
            seconds=time.perf_counter() - started,
            complete=after is None,
        )
