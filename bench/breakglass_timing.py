"""Whether a refused break-glass sign-in tells its reason by its timing.

Runs ``BreakGlassService.authenticate`` in-process on SQLite for the three refusals (an unknown name, a
wrong password, a locked account), interleaved in a random order so drift falls on all three alike, and
prints the median and p90 of each in milliseconds with the ratio of each median to the wrong-password
median. The primitive, timed in the same run, is one raw Argon2id verification with the same parameters.
Before each try the one account's lock is set or cleared directly in its row (outside the timed
region), so the wrong-password path never locks it and the locked path always finds it locked.

    python bench/breakglass_timing.py [--tries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.rbac import global_access
from certctl.keys.envelope import MasterKey
from certctl.services.audit import Actor
from certctl.services.breakglass import (
    MAX_FAILURES,
    BreakGlassService,
    Refusal,
    password_hasher,
    verify_password,
)
from certctl.services.container import build_services
from certctl.store.db import make_engine, migrate, unit_of_work
from certctl.store.repositories import breakglass as accounts

ADMIN = Actor(id="bench", name="bench", type="system", access=global_access(["admin"]))
PASSWORD = "bench " + secrets.token_urlsafe(24)
WRONG = "not it " + secrets.token_urlsafe(24)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def never(_connection: AsyncConnection, _username: str) -> None:
    raise AssertionError("a refusal path signed in")


async def refused(service: BreakGlassService, username: str, password: str, expected: str) -> None:
    outcome = await service.authenticate(
        username=username, password=password, client_ip="127.0.0.1", open_session=never
    )
    assert isinstance(outcome, Refusal) and outcome.reason == expected, outcome


async def measure(url: str, tries: int) -> dict[str, list[float]]:
    migrate(url)
    engine = make_engine(url, pool_size=4)
    services = build_services(
        engine=engine, master_key=MasterKey(secrets.token_bytes(32)), public_http_url="http://x"
    )
    service = services.breakglass
    await service.set_credential(username="ops", password=PASSWORD, actor=ADMIN)
    await service.dummy_hash()

    def set_lock(locked_until: datetime | None) -> Callable[[], Awaitable[None]]:
        async def prepare() -> None:
            async with unit_of_work(engine) as uow:
                account = await accounts.current(uow.connection)
                assert account is not None
                failures = MAX_FAILURES if locked_until else 0
                changes = {"failed_attempts": failures, "locked_until": locked_until}
                await accounts.save(uow.connection, account["id"], changes)

        return prepare

    async def unknown_user() -> None:
        await refused(service, "nobody", PASSWORD, "unknown_user")

    async def wrong_password() -> None:
        await refused(service, "ops", WRONG, "wrong_password")

    async def locked() -> None:
        await refused(service, "ops", PASSWORD, "locked")

    unlocked = set_lock(None)
    paths: dict[str, tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]] = {
        "unknown user": (unknown_user, unlocked),
        "wrong password": (wrong_password, unlocked),
        "locked": (locked, set_lock(services.context.clock.now() + timedelta(days=1))),
    }
    results: dict[str, list[float]] = {name: [] for name in paths}
    order = list(paths)
    for round_number in range(tries + 10):
        random.shuffle(order)
        for name in order:
            action, prepare = paths[name]
            await prepare()  # outside the timed region
            started = time.perf_counter()
            await action()
            if round_number >= 10:  # the first rounds warm caches and the connection pool
                results[name].append((time.perf_counter() - started) * 1000)
    await engine.dispose()
    return results


def primitive(tries: int) -> list[float]:
    hasher = password_hasher()
    stored = hasher.hash(PASSWORD)
    samples = []
    for _ in range(tries):
        started = time.perf_counter()
        verify_password(hasher, stored, WRONG)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        results = asyncio.run(measure(f"sqlite+aiosqlite:///{Path(workdir) / 'bench.db'}", args.tries))
    raw = primitive(args.tries)
    base = statistics.median(results["wrong password"])
    raw_median = statistics.median(raw)
    print(f"break-glass refusals, SQLite, {args.tries} tries each (Argon2id m=64 MiB, t=3, p=1)")
    for name, samples in results.items():
        median, p90 = statistics.median(samples), percentile(samples, 0.9)
        print(
            f"  {name:15s} median {median:7.2f} ms  p90 {p90:7.2f} ms  "
            f"median/wrong-password {median / base:5.3f}  median/primitive {median / raw_median:5.3f}"
        )
    print(
        f"  {'Argon2id verify':15s} median {raw_median:7.2f} ms  "
        f"p90 {percentile(raw, 0.9):7.2f} ms  (the primitive)"
    )


if __name__ == "__main__":
    main()
