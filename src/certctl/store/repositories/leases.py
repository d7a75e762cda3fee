"""Leader leases: one row per periodic task group, taken when free or expired, renewed by its holder.

Acquiring and renewing are one atomic upsert on both engines (``INSERT ... ON CONFLICT (name) DO UPDATE
... WHERE holder = me OR expires_at < now RETURNING``): of N replicas racing for an expired lease exactly
one sees a row come back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.models import SchedulerLease, table_of

LEASES = table_of(SchedulerLease)


async def acquire(
    connection: AsyncConnection, *, name: str, holder: str, now: datetime, expires_at: datetime
) -> bool:
    """Take or renew the lease; True when ``holder`` holds it until ``expires_at``."""
    insert_of: Any = postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert
    statement = insert_of(LEASES).values(name=name, holder=holder, expires_at=expires_at)
    statement = statement.on_conflict_do_update(
        index_elements=["name"],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=or_(LEASES.c.holder == holder, LEASES.c.expires_at < now),
    ).returning(LEASES.c.holder)
    row = (await connection.execute(statement)).first()
    return row is not None and row.holder == holder


async def release(connection: AsyncConnection, *, name: str, holder: str) -> None:
    await connection.execute(delete(LEASES).where(LEASES.c.name == name, LEASES.c.holder == holder))
