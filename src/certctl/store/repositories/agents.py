"""Named queries for agents, their enrolment tokens, targets and certificate-target mappings."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.agents import AgentStatus
from certctl.store.models import Agent, AgentEnrolmentToken, CertificateTarget, Target, table_of

AGENTS = table_of(Agent)
TOKENS = table_of(AgentEnrolmentToken)
TARGETS = table_of(Target)
MAPPINGS = table_of(CertificateTarget)


def _one(row: Any) -> dict[str, Any] | None:
    return dict(row) if row else None


async def insert_token(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(TOKENS).values(**values))


async def use_token(
    connection: AsyncConnection, *, token_sha256: str, now: datetime, agent_id: str
) -> dict[str, Any] | None:
    """Spend an unused, unexpired token: one conditional UPDATE, so two hosts racing with the same token
    cannot both enrol."""
    statement = (
        update(TOKENS)
        .where(TOKENS.c.token_sha256 == token_sha256, TOKENS.c.used_at.is_(None), TOKENS.c.expires_at > now)
        .values(used_at=now, agent_id=agent_id)
        .returning(*TOKENS.c)
    )
    return _one((await connection.execute(statement)).mappings().first())


async def list_tokens(connection: AsyncConnection) -> list[dict[str, Any]]:
    statement = select(TOKENS).order_by(TOKENS.c.created_at.desc()).limit(500)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def insert_agent(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(AGENTS).values(**values))


async def get_agent(connection: AsyncConnection, agent_id: str) -> dict[str, Any] | None:
    return _one((await connection.execute(select(AGENTS).where(AGENTS.c.id == agent_id))).mappings().first())


async def get_agent_by_name(connection: AsyncConnection, name: str) -> dict[str, Any] | None:
    statement = select(AGENTS).where(AGENTS.c.name == name)
    return _one((await connection.execute(statement)).mappings().first())


_BY_CREDENTIAL = select(
    AGENTS.c.id,
    AGENTS.c.name,
    AGENTS.c.status,
    AGENTS.c.proxy,
    AGENTS.c.credential_sha256,
    AGENTS.c.previous_valid_until,
).where(
    or_(
        AGENTS.c.credential_sha256 == bindparam("digest"),
        (AGENTS.c.previous_credential_sha256 == bindparam("digest"))
        & (AGENTS.c.previous_valid_until > bindparam("at")),
    )
)


async def agent_by_credential(
    connection: AsyncConnection, digest: str, *, now: datetime
) -> dict[str, Any] | None:
    """Who presents this digest: the agent whose current credential, or previous one still in its grace
    period, it is (id, name, status, proxy, current digest, end of the grace period)."""
    return _one((await connection.execute(_BY_CREDENTIAL, {"digest": digest, "at": now})).mappings().first())


_CHANGED_SINCE = select(AGENTS.c.id, AGENTS.c.status, AGENTS.c.credential_sha256).where(
    AGENTS.c.updated_at >= bindparam("since"),
    or_(AGENTS.c.retired_at.is_not(None), AGENTS.c.previous_credential_sha256.is_not(None)),
)


async def agents_changed_since(connection: AsyncConnection, since: datetime) -> list[dict[str, Any]]:
    """Id, status and current credential digest of the agents rotated or retired at or after ``since``
    (both set ``updated_at``). Agents only enrolled since are left out: nothing of theirs was cached
    before, and a fleet enrolling must not make this read large."""
    return [dict(row) for row in (await connection.execute(_CHANGED_SINCE, {"since": since})).mappings()]


async def list_agents(connection: AsyncConnection, *, status: str | None = None) -> list[dict[str, Any]]:
    statement = select(AGENTS).order_by(AGENTS.c.name)
    if status:
        statement = statement.where(AGENTS.c.status == status)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def update_agent(connection: AsyncConnection, agent_id: str, values: dict[str, Any]) -> bool:
    result = await connection.execute(update(AGENTS).where(AGENTS.c.id == agent_id).values(**values))
    return result.rowcount > 0


_TOUCH = update(AGENTS).where(
    AGENTS.c.id == bindparam("agent_id"), AGENTS.c.status == str(AgentStatus.ACTIVE)
)


async def touch_agents(connection: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Heartbeats: record what each agent reported (``agent_id`` plus the columns to set, the same in
    every row), only while it is active. One statement executed for many rows."""
    if rows:
        await connection.execute(_TOUCH, list(rows))


async def insert_target(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(TARGETS).values(**values))


async def get_target(connection: AsyncConnection, ref: str) -> dict[str, Any] | None:
    statement = select(TARGETS).where(or_(TARGETS.c.id == ref, TARGETS.c.name == ref))
    return _one((await connection.execute(statement)).mappings().first())


async def list_targets(
    connection: AsyncConnection, *, agent_id: str | None = None, type: str | None = None
) -> list[dict[str, Any]]:
    statement = select(TARGETS).order_by(TARGETS.c.name)
    if agent_id:
        statement = statement.where(TARGETS.c.agent_id == agent_id)
    if type:
        statement = statement.where(TARGETS.c.type == type)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def update_target(connection: AsyncConnection, target_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(TARGETS).where(TARGETS.c.id == target_id).values(**values))


async def delete_target(connection: AsyncConnection, target_id: str) -> None:
    await connection.execute(delete(TARGETS).where(TARGETS.c.id == target_id))


async def targets_of_certificate(connection: AsyncConnection, certificate_id: str) -> list[dict[str, Any]]:
    statement = (
        select(TARGETS)
        .join(MAPPINGS, MAPPINGS.c.target_id == TARGETS.c.id)
        .where(MAPPINGS.c.certificate_id == certificate_id)
        .order_by(TARGETS.c.name)
    )
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def map_target(
    connection: AsyncConnection, *, certificate_id: str, target_id: str, now: datetime
) -> bool:
    """False when the mapping existed already."""
    exists = select(func.count()).where(
        MAPPINGS.c.certificate_id == certificate_id, MAPPINGS.c.target_id == target_id
    )
    if (await connection.execute(exists)).scalar_one():
        return False
    await connection.execute(
        insert(MAPPINGS).values(certificate_id=certificate_id, target_id=target_id, created_at=now)
    )
    return True


async def unmap_target(connection: AsyncConnection, *, certificate_id: str, target_id: str) -> bool:
    statement = delete(MAPPINGS).where(
        MAPPINGS.c.certificate_id == certificate_id, MAPPINGS.c.target_id == target_id
    )
    return (await connection.execute(statement)).rowcount > 0


async def count_mappings_of_target(connection: AsyncConnection, target_id: str) -> int:
    statement = select(func.count()).where(MAPPINGS.c.target_id == target_id)
    return int((await connection.execute(statement)).scalar_one())
