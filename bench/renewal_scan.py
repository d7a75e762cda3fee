"""One renewal scan tick over a million managed certificates in PostgreSQL.

Bulk-loads 1,000,000 certificates with COPY (90-day lifetimes, issue times spread over the renewal
period, ``renewal_due_at`` from the real policy; ``--due-share`` of them (default 1 %) past their due
time, a backlog as after an outage), then times:

* tick 1: the leader's scan enqueuing every due certificate (paged by ``renewal_due_at``),
* tick 2: the steady state right after (nothing new is due; the scan finds no work),
* the baseline, in the same run: raw ``SELECT count(*) ... WHERE renewal_due_at <= now``.

Tick 1 is then undone and run again under tracemalloc (which slows Python) for its peak memory; the
process's max RSS is printed too.

    CERTCTL_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test \
        python bench/renewal_scan.py [--certificates 1000000] [--due-share 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from _server import fresh_postgres
from certctl.domain.clock import SystemClock
from certctl.domain.renewal import DEFAULT_POLICY, renewal_due_at
from certctl.keys.envelope import MasterKey
from certctl.scheduler.renewal_scan import RenewalScanner
from certctl.services.container import build_services
from certctl.store.db import make_engine, migrate

LIFETIME = timedelta(days=90)


def load(url: str, count: int, due_share: float, now: datetime) -> int:
    """COPY the fleet in; returns how many are due at ``now``."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    due = 0
    with psycopg.connect(conninfo) as connection:
        connection.execute("INSERT INTO profiles VALUES ('prf_b', 'bench', '', '{}', %s, %s)", (now, now))
        connection.execute(
            "INSERT INTO issuers VALUES ('iss_b', 'bench', 'local', '{}', NULL, true, %s, %s)", (now, now)
        )
        columns = (
            "id, name, common_name, sans, tags, environment, issuer_id, profile_id, status, source, "
            "auto_renew, current_version_id, not_after, renewal_due_at, created_at, updated_at"
        )
        # Steady state: issue times spread over the renewal period; a due_share of them form a backlog.
        with connection.cursor().copy(f"COPY managed_certificates ({columns}) FROM STDIN") as copy:
            for n in range(count):
                certificate_id = f"crt_{n:012x}{secrets.token_hex(4)}"
                backlog = (n * 7919 % 10_000) < due_share * 10_000
                age = (
                    LIFETIME * (0.70 + 0.25 * (n % 997) / 997)
                    if backlog
                    else LIFETIME * 0.6 * (n % 1009) / 1009
                )
                not_before = now - age
                not_after = not_before + LIFETIME
                due_at = renewal_due_at(
                    not_before=not_before,
                    not_after=not_after,
                    policy=DEFAULT_POLICY,
                    certificate_id=certificate_id,
                )
                assert due_at is not None
                due += due_at <= now
                copy.write_row((
                    certificate_id, f"c{n}", f"c{n}.example.com", f'["c{n}.example.com"]', "{}", "", "iss_b",
                    "prf_b", "Active", "import", True, f"ver_{n:012x}", not_after, due_at, not_before, now,
                ))  # fmt: skip
        connection.commit()
        connection.execute("ANALYZE managed_certificates")
        connection.commit()
    return due


def baseline(url: str, now: datetime) -> tuple[int, float]:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection:
        started = time.perf_counter()
        row = connection.execute(
            "SELECT count(*) FROM managed_certificates WHERE renewal_due_at <= %s", (now,)
        ).fetchone()
        elapsed = time.perf_counter() - started
    assert row is not None
    return int(row[0]), elapsed


async def ticks(url: str, now: datetime) -> tuple[float, float, int, int]:
    """(tick 1 seconds, tick 2 seconds, tick 1 traced peak bytes, jobs created)."""
    services = build_services(
        engine=make_engine(url, pool_size=4),
        master_key=MasterKey(secrets.token_bytes(32)),
        public_http_url="http://127.0.0.1:8080",
        clock=SystemClock(),
    )
    scanner = RenewalScanner(services.renewals, max_pages=1000)
    try:
        first = await scanner.tick(now=now)
        second = await scanner.tick(now=now)
        assert second.created == 0
        async with services.context.engine.begin() as connection:
            await connection.execute(text("DELETE FROM jobs"))
            await connection.execute(text("UPDATE managed_certificates SET status = 'Active'"))
        tracemalloc.start()
        traced = await scanner.tick(now=now)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert traced.created == first.created
    finally:
        await services.context.engine.dispose()
    return first.seconds, second.seconds, peak, first.created


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=1_000_000)
    parser.add_argument("--due-share", type=float, default=0.01)
    args = parser.parse_args()
    base = os.environ.get("CERTCTL_TEST_DATABASE_URL")
    if not base:
        raise SystemExit("set CERTCTL_TEST_DATABASE_URL to a PostgreSQL server")
    url = fresh_postgres(base, "certctl_bench_renewal_scan")
    migrate(url)
    now = datetime.now(UTC)
    started = time.perf_counter()
    due = load(url, args.certificates, args.due_share, now)
    print(f"loaded {args.certificates:,} certificates ({due:,} due) in {time.perf_counter() - started:.1f} s")
    counted, count_seconds = baseline(url, now)
    assert counted == due, (counted, due)
    first, second, peak, created = asyncio.run(ticks(url, now))
    assert created == due, (created, due)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"baseline  SELECT count(*) WHERE due <= now: {count_seconds * 1000:.1f} ms ({counted:,})")
    print(f"tick 1    {created:,} renewal jobs created: {first:.3f} s (traced peak {peak / 2**20:.1f} MB)")
    print(f"tick 2    steady state, nothing new due: {second * 1000:.1f} ms")
    print(f"tick 1 / baseline {first / count_seconds:.0f}x; tick 2 / baseline {second / count_seconds:.2f}x")
    print(f"max RSS of the process: {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
