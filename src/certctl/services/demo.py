"""Demo data for a first look: a CA hierarchy, profiles, teams, and ~30 certificates with 180 days of
history (renewals, expired, expiring, revoked), so the dashboard tells a story on first open."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from certctl.domain.clock import FrozenClock
from certctl.domain.lifecycle import CertificateSource
from certctl.domain.rbac import global_access
from certctl.keys.envelope import MasterKey
from certctl.pki.builder import Subject
from certctl.pki.names import NameConstraints
from certctl.services.audit import Actor
from certctl.services.cas import NewCa
from certctl.services.container import Services, build_services
from certctl.services.issuance import Issued, IssueRequest
from certctl.services.profiles import default_rules
from certctl.store.db import unit_of_work
from certctl.store.repositories import certificates, rows

DEMO = Actor(id="demo", name="demo-seed", type="system", access=global_access(["admin"]))
SERVICES = (
    "api", "www", "auth", "payments", "checkout", "grafana", "vault", "ldap", "mail", "vpn",
    "registry", "ci", "git", "wiki", "status", "search", "billing", "cdn", "metrics", "kafka",
    "db-proxy", "sso", "intranet", "backup", "edge", "gateway", "chat", "files", "docs", "hr",
)  # fmt: skip
ENVIRONMENTS = ("production", "staging", "dev")


async def seed_demo(
    *, engine: AsyncEngine, master_key: MasterKey, public_http_url: str, now: datetime
) -> bool:
    """Seed an empty inventory. Returns False (and does nothing) when certificates already exist."""
    async with unit_of_work(engine) as uow:
        if await rows.list_all(uow.connection, rows.CERTS, order_by="created_at"):
            return False
    clock = FrozenClock(now - timedelta(days=200))
    services = build_services(
        engine=engine, master_key=master_key, public_http_url=public_http_url, clock=clock
    )
    root = await services.cas.create(
        spec=NewCa(name="Demo Root CA", subject=Subject("Demo Root CA", "certctl demo"), validity_days=3650),
        actor=DEMO,
    )
    intermediate = await services.cas.create(
        spec=NewCa(
            name="Demo Intermediate CA",
            subject=Subject("Demo Intermediate CA", "certctl demo"),
            parent=root["id"],
            validity_days=1825,
            path_length=1,
            name_constraints=NameConstraints(permitted_dns=("example.com", "example.internal")),
        ),
        actor=DEMO,
    )
    issuing = await services.cas.create(
        spec=NewCa(
            name="Demo Issuing CA",
            subject=Subject("Demo Issuing CA", "certctl demo"),
            parent=intermediate["id"],
            validity_days=1095,
            path_length=0,
        ),
        actor=DEMO,
    )
    mtls = await services.cas.create(
        spec=NewCa(
            name="Demo mTLS CA",
            subject=Subject("Demo mTLS CA", "certctl demo"),
            parent=intermediate["id"],
            validity_days=1095,
            path_length=0,
        ),
        actor=DEMO,
    )
    day = 86400
    profiles: dict[str, dict[str, Any]] = {
        "default": {"max_ttl_seconds": 397 * day, "default_ttl_seconds": 90 * day},
        "short-lived": {"max_ttl_seconds": 30 * day, "default_ttl_seconds": 7 * day},
        "internal-mtls": {
            "max_ttl_seconds": 90 * day,
            "default_ttl_seconds": 30 * day,
            "allowed_ekus": ["serverAuth", "clientAuth"],
            "default_ekus": ["serverAuth", "clientAuth"],
        },
    }
    for name, overrides in profiles.items():
        rules = default_rules(**overrides)
        await services.profiles.create(
            values={"name": name, "description": f"Demo profile {name}", "rules": rules}, actor=DEMO
        )
    await services.issuers.create(
        values={"name": "local", "type": "local", "options": {"ca": issuing["id"]}, "enabled": True},
        actor=DEMO,
    )
    await services.issuers.create(
        values={"name": "local-mtls", "type": "local", "options": {"ca": mtls["id"]}, "enabled": True},
        actor=DEMO,
    )
    teams = [
        await services.teams.create(values={"name": n, "description": f"{n} team"}, actor=DEMO)
        for n in ("platform", "payments", "identity")
    ]
    owners = [
        await services.owners.create(
            values={"name": n, "email": f"{n}@example.com", "team_id": teams[i % 3]["id"]}, actor=DEMO
        )
        for i, n in enumerate(("alice", "bob", "carol", "dave"))
    ]
    chooser = random.Random(7)  # noqa: S311 - deterministic demo data, not security
    for index, service in enumerate(SERVICES):
        profile, issuer = "default", "local"
        if index % 5 == 3:
            profile = "short-lived"
        elif index % 7 == 5:
            profile, issuer = "internal-mtls", "local-mtls"
        domain = "example.internal" if profile == "internal-mtls" else "example.com"
        start = now - timedelta(days=chooser.randint(20, 180), hours=chooser.randint(0, 23))
        clock.at = start
        team = teams[index % 3]
        issued = await services.issuance.issue(
            request=IssueRequest(
                name=f"{service}.{domain}",
                issuer=issuer,
                profile=profile,
                key_type=chooser.choice(["ecdsa-p256", "ecdsa-p256", "rsa-2048", "ecdsa-p384"]),
                common_name=f"{service}.{domain}",
                sans=(f"{service}.{domain}",) + ((f"{service}-alt.{domain}",) if index % 4 == 0 else ()),
                owner_id=owners[index % 4]["id"],
                team_id=team["id"],
                tags={"service": service, "tier": "critical" if index % 3 == 0 else "standard"},
                environment=ENVIRONMENTS[index % 3],
                auto_renew=index % 9 != 4,
                source=str(CertificateSource.DEMO),
            ),
            actor=DEMO,
        )
        if isinstance(issued, Issued):  # demo profiles do not require approval: nothing is held
            await _history(
                services, issued.certificate, clock, now, renew_every=_renew_every(profile), index=index
            )
    clock.at = now
    async with unit_of_work(engine) as uow:
        await certificates.refresh_statuses(uow.connection, now=now, expiring_from=now + timedelta(days=30))
    return True


def _renew_every(profile: str) -> timedelta:
    return {
        "default": timedelta(days=60),
        "short-lived": timedelta(days=5),
        "internal-mtls": timedelta(days=20),
    }[profile]


async def _history(
    services: Services,
    certificate: dict[str, Any],
    clock: FrozenClock,
    now: datetime,
    *,
    renew_every: timedelta,
    index: int,
) -> None:
    """Renew on schedule up to now, except the few that tell other stories (expired, expiring, revoked)."""
    story = index % 10
    if story == 4:  # auto-renew off: left to expire or nearly so
        return
    next_at = clock.at + renew_every
    if story == 7:  # renewal stalled a while ago: expiring soon
        next_at = clock.at + timedelta(days=10)
        renew_every = timedelta(days=10_000)
    while next_at < now:
        clock.at = next_at
        await services.issuance.renew(certificate_ref=str(certificate["id"]), csr_pem=None, actor=DEMO)
        next_at = clock.at + renew_every
    if story == 9:
        await _mark_revoked(services, str(certificate["id"]), at=now - timedelta(days=3))


async def _mark_revoked(services: Services, certificate_id: str, *, at: datetime) -> None:
    async with unit_of_work(services.context.engine) as uow:
        await certificates.mark_revoked(uow.connection, certificate_id, at=at, reason="keyCompromise")
