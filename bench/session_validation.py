"""What resolving a dashboard session adds to a request.

Times ``SessionStore.resolve`` for an API-key session and for an OIDC user session holding two mapped
groups, warm (the session resolved within the last second by this process: cookie split, HMAC check,
timeouts and binding checked on the cached row) and cold (one joined primary-key read of the session with
its API key or user, then the principal's grants or group mappings), on SQLite and, when
``--database-url`` (or ``CERTCTL_TEST_DATABASE_URL``) names one, on PostgreSQL. The raw primitive, timed
in the same run, is one primary-key ``SELECT`` of the session row on the same engine. Prints p50/p99 in
milliseconds and the ratio of each p99 to the primitive's.

    python bench/session_validation.py [--calls 5000] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, select, text

from certctl.auth.session_keys import SigningKeys
from certctl.domain.rbac import ScopeType, global_access
from certctl.keys.envelope import MasterKey
from certctl.services.audit import Actor, RequestInfo
from certctl.services.container import build_services
from certctl.services.identity import ProviderSettings, SignedInUser
from certctl.store.db import autocommit_reads, make_engine, migrate, sync_url, unit_of_work
from certctl.store.repositories import rows
from certctl.web.sessions import SessionPrincipal, SessionStore

ADMIN = Actor(id="bench", name="bench", type="system", access=global_access(["admin"]))


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


async def timed(calls: int, action: Callable[[], Awaitable[None]]) -> list[float]:
    for _ in range(200):
        await action()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def measure(url: str, calls: int) -> dict[str, list[float]]:
    migrate(url)
    engine = make_engine(url, pool_size=4)
    services = build_services(
        engine=engine, master_key=MasterKey(secrets.token_bytes(32)), public_http_url="http://x"
    )
    keys = SigningKeys(engine, services.context.master_key, services.context.clock, window=timedelta(hours=8))
    await keys.ensure()
    store = SessionStore(services, keys=keys)
    key = await services.api_keys.create(
        name=f"bench-{secrets.token_hex(3)}", roles=["viewer"], expires_in=None, actor=ADMIN
    )
    key_session = await store.open(
        SessionPrincipal(type="api_key", id=key.key["id"], name="bench"), request=RequestInfo()
    )
    provider = await services.identity.create_provider(
        name=f"bench-{secrets.token_hex(3)}",
        settings=ProviderSettings(issuer="https://idp.example", client_id="certctl"),
        actor=ADMIN,
        request=None,
    )
    for group, role in (("pki-operators", "operator"), ("pki-auditors", "auditor")):
        await services.identity.add_mapping(
            provider["id"],
            group=group,
            role=role,
            scope=ScopeType.GLOBAL,
            scope_ref=None,
            actor=ADMIN,
            request=None,
        )
    provider_row = await services.identity.provider(provider["id"])
    signed = SignedInUser(
        provider=provider_row,
        subject=secrets.token_hex(8),
        email="bench@example.test",
        name="Bench",
        groups=["pki-operators", "pki-auditors", "everyone"],
        sid=None,
    )
    async with unit_of_work(engine) as uow:
        user = await services.identity.record_sign_in(uow.connection, signed)
    user_session = await store.open(
        SessionPrincipal(type="user", id=user["id"], name="bench", provider_id=provider_row["id"]),
        request=RequestInfo(),
    )
    hashed = key_session.session.id_sha256

    async def primitive() -> None:
        async with autocommit_reads(engine) as connection:
            await connection.execute(select(rows.SESSIONS.c.id).where(rows.SESSIONS.c.id == hashed))

    async def resolve_key() -> None:
        assert await store.resolve(key_session.token) is not None

    async def resolve_user() -> None:
        assert await store.resolve(user_session.token) is not None

    async def cold_key() -> None:
        store._sessions.clear()  # as for a session's first request in a second
        store._access.clear()
        assert await store.resolve(key_session.token) is not None

    async def cold_user() -> None:
        store._sessions.clear()
        store._access.clear()
        assert await store.resolve(user_session.token) is not None

    results = {
        "primary-key SELECT (primitive)": await timed(calls, primitive),
        "warm: API-key session": await timed(calls, resolve_key),
        "warm: OIDC user session": await timed(calls, resolve_user),
        "cold: API-key session": await timed(calls, cold_key),
        "cold: OIDC user session": await timed(calls, cold_user),
    }
    await engine.dispose()
    return results


def report(engine_name: str, results: dict[str, list[float]]) -> None:
    base = percentile(results["primary-key SELECT (primitive)"], 0.99)
    print(f"\n{engine_name}")
    for name, samples in results.items():
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        print(f"  {name:34s} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  p99/primitive {p99 / base:5.2f}x")


def fresh_pg(url: str) -> str:
    name = f"certctl_bench_sessions_{os.getpid()}"
    admin = create_engine(sync_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--database-url", default=os.environ.get("CERTCTL_TEST_DATABASE_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        report(
            "SQLite", asyncio.run(measure(f"sqlite+aiosqlite:///{Path(workdir) / 'bench.db'}", args.calls))
        )
    if args.database_url:
        report("PostgreSQL", asyncio.run(measure(fresh_pg(args.database_url), args.calls)))


if __name__ == "__main__":
    main()
