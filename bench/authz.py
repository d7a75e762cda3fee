"""What authorization adds to a request: authenticate the key, check the route permission, apply scopes.

Times, per call, the exact work a request does before its handler runs (``Need(...)`` on a warm key
cache: SHA-256 of the key, cache lookup, permission check) plus the per-resource scope decisions
(``Access.allows`` and ``Access.scope_for`` over five grants), and, separately, a cold authentication
(cache miss: key and grants read from SQLite). Prints p50/p99 and the ratio of the warm p99 to one whole
in-process request (``GET /api/v1/certificates/{id}``) measured in the same run.

    python bench/authz.py [--calls 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import httpx2
from starlette.requests import Request

from certctl.api.app import create_app
from certctl.api.deps import Need
from certctl.domain.rbac import ScopeType, global_access
from certctl.keys.envelope import MasterKey
from certctl.pki.builder import Subject
from certctl.services.access_control import GrantSpec
from certctl.services.audit import Actor
from certctl.services.cas import NewCa
from certctl.services.container import build_services
from certctl.services.issuance import IssueRequest
from certctl.services.profiles import default_rules
from certctl.store.db import make_engine, migrate

ADMIN = Actor(id="bench", name="bench", type="system", access=global_access(["admin"]))


def percentile(samples: list[int], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] / 1000.0


async def run(calls: int, workdir: Path) -> None:
    url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    migrate(url)
    services = build_services(
        engine=make_engine(url), master_key=MasterKey(secrets.token_bytes(32)), public_http_url="http://x"
    )
    root = await services.cas.create(spec=NewCa(name="R", subject=Subject("R")), actor=ADMIN)
    for name in ("p1", "p2", "p3"):
        await services.profiles.create(
            values={
                "name": name,
                "description": "",
                "rules": default_rules(allowed_key_algorithms=["ECDSA", "RSA"]),
            },
            actor=ADMIN,
        )
    await services.issuers.create(
        values={"name": "i", "type": "local", "options": {"ca": root["id"]}, "enabled": True}, actor=ADMIN
    )
    key = await services.api_keys.create(name="k", roles=["viewer"], expires_in=None, actor=ADMIN)
    for profile in ("p1", "p2", "p3"):
        spec = GrantSpec(role="operator", scope=ScopeType.PROFILE, scope_ref=profile, expires_at=None)
        await services.access.grant(key_id=key.key["id"], spec=spec, actor=ADMIN, request=None)
    spec = GrantSpec(role="auditor", scope=ScopeType.GLOBAL, scope_ref=None, expires_at=None)
    await services.access.grant(key_id=key.key["id"], spec=spec, actor=ADMIN, request=None)
    app = create_app(services)
    fastapi_app = app.app.app  # type: ignore[attr-defined]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/certificates",
        "headers": [(b"authorization", f"Bearer {key.secret}".encode())],
        "app": fastapi_app,
        "query_string": b"",
    }
    need = Need("cert.read")
    warm: list[int] = []
    decisions: list[int] = []
    cold: list[int] = []
    profile_ids = [p["id"] for p in await services.profiles.list()]
    for index in range(calls):
        request = Request(dict(scope))
        started = time.perf_counter_ns()
        actor = await need(request)
        warm.append(time.perf_counter_ns() - started)
        started = time.perf_counter_ns()
        actor.access.allows("cert.renew", profile_id=profile_ids[index % 3], issuer_id="iss_x")
        actor.access.scope_for("cert.read")
        decisions.append(time.perf_counter_ns() - started)
    for _ in range(min(calls, 2000)):
        services.authenticator.forget()
        started = time.perf_counter_ns()
        await services.authenticator.authenticate(key.secret, now=services.context.clock.now())
        cold.append(time.perf_counter_ns() - started)
    issued = await services.issuance.issue(
        request=IssueRequest(
            name="bench.example.com", issuer="i", profile="p1", common_name="bench.example.com"
        ),
        actor=ADMIN,
    )
    transport = httpx2.ASGITransport(app=app)
    whole: list[int] = []
    async with httpx2.AsyncClient(transport=transport, base_url="https://bench") as client:
        headers = {"Authorization": f"Bearer {key.secret}"}
        path = f"/api/v1/certificates/{issued.certificate['id']}"
        for _ in range(min(calls, 3000)):
            started = time.perf_counter_ns()
            response = await client.get(path, headers=headers)
            whole.append(time.perf_counter_ns() - started)
            assert response.status_code == 200, response.text
    await services.context.engine.dispose()
    report = [
        ("authenticate + route permission (warm key cache)", warm),
        ("scope decisions (allows + scope_for, 5 grants)", decisions),
        ("authenticate on a cache miss (key + grants from SQLite)", cold),
        ("whole request GET /api/v1/certificates/{id} in-process", whole),
    ]
    for label, samples in report:
        print(f"{label}: p50 {percentile(samples, 0.5):.1f} us, p99 {percentile(samples, 0.99):.1f} us")
    warm_p99 = percentile(warm, 0.99) + percentile(decisions, 0.99)
    whole_p50 = statistics.median(whole) / 1000.0
    print(
        f"authorization p99 {warm_p99:.1f} us per request (aim < 1000 us); "
        f"ratio to a whole request's p50 ({whole_p50:.0f} us): {warm_p99 / whole_p50:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.calls, Path(tmp)))


if __name__ == "__main__":
    main()
