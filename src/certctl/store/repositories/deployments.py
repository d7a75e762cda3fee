"""Named queries for deployments: the per-agent work queue and the per-certificate history.

The work-queue statements run on every agent poll: they are built once, with bound parameters, so a poll
neither rebuilds nor re-hashes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import ReturningUpdate

from certctl.domain.agents import OPEN, DeploymentStatus
from certctl.store.models import Deployment, Target, table_of
from certctl.store.repositories.jobs import claimable

DEPLOYMENTS = table_of(Deployment)
TARGETS = table_of(Target)


async def insert_deployments(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await connection.execute(insert(DEPLOYMENTS), list(rows))


async def supersede_open(
    connection: AsyncConnection, *, certificate_id: str, target_ids: Sequence[str], now: datetime
) -> int:
    """Older deployments of this certificate to these targets that have not finished are replaced by the
    one being created (a newer version makes them pointless)."""
    if not target_ids:
        return 0
    statement = (
        update(DEPLOYMENTS)
        .where(
            DEPLOYMENTS.c.certificate_id == certificate_id,
            DEPLOYMENTS.c.target_id.in_(list(target_ids)),
            DEPLOYMENTS.c.status.in_([str(s) for s in OPEN]),
        )
        .values(status=DeploymentStatus.SUPERSEDED, updated_at=now, finished_at=now, claimed_until=None)
    )
    return (await connection.execute(statement)).rowcount


_AVAILABLE = and_(
    DEPLOYMENTS.c.agent_id == bindparam("owner_agent"),
    or_(
        DEPLOYMENTS.c.status == str(DeploymentStatus.PENDING),
        and_(
            DEPLOYMENTS.c.status == str(DeploymentStatus.IN_PROGRESS),
            DEPLOYMENTS.c.claimed_until < bindparam("at"),
        ),
    ),
)
"""The agent's work it may be handed now: pending, or in progress under a lease that lapsed."""

_ANYTHING_FOR = select(
    exists().where(_AVAILABLE).label("work"),
    exists()
    .where(TARGETS.c.agent_id == bindparam("owner_agent"), TARGETS.c.check_requested_at.is_not(None))
    .label("checks"),
)

_GIVE_UP = (
    update(DEPLOYMENTS)
    .where(_AVAILABLE, DEPLOYMENTS.c.attempts >= bindparam("attempt_limit"))
    .values(
        status=str(DeploymentStatus.FAILED),
        message="the agent fetched this deployment repeatedly without reporting an outcome",
        updated_at=bindparam("at"),
        finished_at=bindparam("at"),
        claimed_until=None,
    )
    .returning(*DEPLOYMENTS.c)
)

_CANDIDATES = (
    select(DEPLOYMENTS.c.id)
    .where(_AVAILABLE)
    .order_by(DEPLOYMENTS.c.created_at, DEPLOYMENTS.c.id)
    .limit(bindparam("batch", type_=Integer))
)
_CLAIM: dict[str, ReturningUpdate[Any]] = {}
"""The claim statement per dialect (its candidate selection locks rows on PostgreSQL only)."""


def _claim_statement(connection: AsyncConnection) -> ReturningUpdate[Any]:
    statement = _CLAIM.get(connection.dialect.name)
    if statement is None:
        statement = (
            update(DEPLOYMENTS)
            .where(claimable(connection, DEPLOYMENTS.c.id, _CANDIDATES), _AVAILABLE)
            .values(
                status=str(DeploymentStatus.IN_PROGRESS),
                claimed_until=bindparam("lease_until"),
                attempts=DEPLOYMENTS.c.attempts + 1,
                updated_at=bindparam("at"),
            )
            .returning(*DEPLOYMENTS.c)
        )
        _CLAIM[connection.dialect.name] = statement
    return statement


async def anything_for(connection: AsyncConnection, *, agent_id: str, now: datetime) -> bool:
    """Whether a poll of this agent has anything to hand out: work it may claim (or must give up on) or
    a target test someone asked for. One cheap read, so an empty poll writes nothing."""
    row = (await connection.execute(_ANYTHING_FOR, {"owner_agent": agent_id, "at": now})).one()
    return bool(row.work or row.checks)


async def give_up_abandoned(
    connection: AsyncConnection, *, agent_id: str, now: datetime, max_attempts: int
) -> list[dict[str, Any]]:
    """Work the agent fetched ``max_attempts`` times without reporting back fails for good."""
    parameters = {"owner_agent": agent_id, "at": now, "attempt_limit": max_attempts}
    return [dict(row) for row in (await connection.execute(_GIVE_UP, parameters)).mappings()]


async def claim(
    connection: AsyncConnection, *, agent_id: str, now: datetime, lease_until: datetime, limit: int
) -> list[dict[str, Any]]:
    """Hand this agent its pending work (and work whose lease lapsed) under a lease, oldest first."""
    parameters = {"owner_agent": agent_id, "at": now, "lease_until": lease_until, "batch": limit}
    result = await connection.execute(_claim_statement(connection), parameters)
    rows = [dict(row) for row in result.mappings()]
    return sorted(rows, key=lambda row: (row["created_at"], row["id"]))


async def get(connection: AsyncConnection, deployment_id: str) -> dict[str, Any] | None:
    statement = select(DEPLOYMENTS).where(DEPLOYMENTS.c.id == deployment_id)
    row = (await connection.execute(statement)).mappings().first()
    return dict(row) if row else None


async def finish(
    connection: AsyncConnection, *, deployment_id: str, agent_id: str, values: dict[str, Any]
) -> bool:
    """Record an outcome; only the owning agent, and only while the deployment is open."""
    statement = (
        update(DEPLOYMENTS)
        .where(
            DEPLOYMENTS.c.id == deployment_id,
            DEPLOYMENTS.c.agent_id == agent_id,
            DEPLOYMENTS.c.status.in_([str(s) for s in OPEN]),
        )
        .values(**values)
    )
    return (await connection.execute(statement)).rowcount > 0


async def assign_version(
    connection: AsyncConnection, *, certificate_id: str, agent_id: str, version_id: str, now: datetime
) -> int:
    """The agent's open key requests for this certificate now deploy the version just issued."""
    statement = (
        update(DEPLOYMENTS)
        .where(
            DEPLOYMENTS.c.certificate_id == certificate_id,
            DEPLOYMENTS.c.agent_id == agent_id,
            DEPLOYMENTS.c.version_id.is_(None),
            DEPLOYMENTS.c.status.in_([str(s) for s in OPEN]),
        )
        .values(version_id=version_id, updated_at=now)
    )
    return (await connection.execute(statement)).rowcount


async def open_key_requests(connection: AsyncConnection, *, certificate_id: str, agent_id: str) -> int:
    statement = select(func.count()).where(
        DEPLOYMENTS.c.certificate_id == certificate_id,
        DEPLOYMENTS.c.agent_id == agent_id,
        DEPLOYMENTS.c.version_id.is_(None),
        DEPLOYMENTS.c.status.in_([str(s) for s in OPEN]),
    )
    return int((await connection.execute(statement)).scalar_one())


async def history(
    connection: AsyncConnection,
    *,
    certificate_id: str | None = None,
    target_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    statement = (
        select(DEPLOYMENTS).order_by(DEPLOYMENTS.c.created_at.desc(), DEPLOYMENTS.c.id.desc()).limit(limit)
    )
    if certificate_id:
        statement = statement.where(DEPLOYMENTS.c.certificate_id == certificate_id)
    if target_id:
        statement = statement.where(DEPLOYMENTS.c.target_id == target_id)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def outcome_counts(connection: AsyncConnection) -> list[tuple[str, str, int]]:
    """(target name, status, count) over every deployment: the per-target Prometheus counters."""
    statement = (
        select(TARGETS.c.name, DEPLOYMENTS.c.status, func.count())
        .join(TARGETS, TARGETS.c.id == DEPLOYMENTS.c.target_id)
        .group_by(TARGETS.c.name, DEPLOYMENTS.c.status)
    )
    return [
        (str(name), str(status), int(count))
        for name, status, count in (await connection.execute(statement)).all()
    ]
