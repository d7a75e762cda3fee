"""Revocations and CRL state: named queries over ``certificate_versions`` and ``crl_state``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.models import CrlState, table_of
from certctl.store.repositories.certificates import CERTS, VERSIONS

CRL_STATE = table_of(CrlState)


async def revoke_current_version(
    connection: AsyncConnection,
    *,
    certificate_id: str,
    version_id: str,
    at: datetime,
    reason: str,
    invalidity_date: datetime | None,
) -> bool:
    """Mark the version revoked and the certificate ``Revoked`` (never renewed again). False when the
    version was revoked already (a concurrent request won), in which case nothing is changed."""
    marked = await connection.execute(
        update(VERSIONS)
        .where(VERSIONS.c.id == version_id, VERSIONS.c.revoked_at.is_(None))
        .values(revoked_at=at, revocation_reason=reason, invalidity_date=invalidity_date)
    )
    if not marked.rowcount:
        return False
    await connection.execute(
        update(CERTS)
        .where(CERTS.c.id == certificate_id)
        .values(status="Revoked", auto_renew=False, updated_at=at)
    )
    return True


async def revoked_entries(
    connection: AsyncConnection,
    *,
    ca_id: str,
    revoked_since: datetime | None = None,
    expired_before: datetime | None = None,
) -> AsyncIterator[tuple[str, datetime, str | None, datetime | None]]:
    """(serial hex, revoked_at, reason, invalidity_date) of every version the CA revoked, streamed.

    ``revoked_since`` keeps revocations at or after it (delta CRLs); ``expired_before`` drops certificates
    whose validity ended before it (RFC 5280 §5.1.2.6 lets entries leave after expiry)."""
    statement = select(
        VERSIONS.c.serial, VERSIONS.c.revoked_at, VERSIONS.c.revocation_reason, VERSIONS.c.invalidity_date
    ).where(VERSIONS.c.issuer_ca_id == ca_id, VERSIONS.c.revoked_at.is_not(None))
    if revoked_since is not None:
        statement = statement.where(VERSIONS.c.revoked_at >= revoked_since)
    if expired_before is not None:
        statement = statement.where(VERSIONS.c.not_after >= expired_before)
    result = await connection.stream(statement.execution_options(yield_per=10_000))
    async for serial, revoked_at, reason, invalidity_date in result:
        yield serial, revoked_at, reason, invalidity_date


def _upsert(connection: AsyncConnection) -> Any:
    return postgresql_insert if connection.dialect.name == "postgresql" else sqlite_insert


async def mark_stale(connection: AsyncConnection, ca_ids: Sequence[str], *, at: datetime) -> None:
    """Record that these CAs owe a new CRL (in the revoking transaction, so a crash cannot lose it)."""
    for ca_id in sorted(set(ca_ids)):
        statement = _upsert(connection)(CRL_STATE).values(
            ca_id=ca_id, last_number=0, stale_since=at, updated_at=at
        )
        statement = statement.on_conflict_do_update(
            index_elements=["ca_id"],
            set_={"stale_since": statement.excluded.stale_since, "updated_at": statement.excluded.updated_at},
            where=CRL_STATE.c.stale_since.is_(None),
        )
        await connection.execute(statement)


async def claim(connection: AsyncConnection, ca_id: str, *, at: datetime) -> dict[str, Any]:
    """The CA's CRL state, locked for this transaction (created when absent). The write comes first, so
    SQLite takes its write lock before the read and PostgreSQL holds the row lock until commit; two
    replicas therefore never hand out the same CRL number (RFC 5280 §5.2.3: numbers increase)."""
    statement = _upsert(connection)(CRL_STATE).values(ca_id=ca_id, last_number=0, updated_at=at)
    statement = statement.on_conflict_do_update(
        index_elements=["ca_id"], set_={"updated_at": statement.excluded.updated_at}
    )
    await connection.execute(statement)
    row = (await connection.execute(select(CRL_STATE).where(CRL_STATE.c.ca_id == ca_id))).mappings().one()
    return dict(row)


async def save(connection: AsyncConnection, ca_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(CRL_STATE).where(CRL_STATE.c.ca_id == ca_id).values(**values))


async def get(connection: AsyncConnection, ca_id: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(CRL_STATE).where(CRL_STATE.c.ca_id == ca_id))).mappings().first()
    return dict(row) if row else None


async def published_numbers(connection: AsyncConnection, ca_id: str) -> tuple[int, int] | None:
    """(full, delta) CRL numbers stored for the CA, without the DER; None before the first CRL."""
    statement = select(CRL_STATE.c.full_number, CRL_STATE.c.delta_number).where(CRL_STATE.c.ca_id == ca_id)
    row = (await connection.execute(statement)).first()
    if row is None or row.full_number is None or row.delta_number is None:
        return None
    return int(row.full_number), int(row.delta_number)


async def all_states(connection: AsyncConnection) -> list[dict[str, Any]]:
    """Every CA's schedule fields (no DER): what the periodic job looks at."""
    columns = (CRL_STATE.c.ca_id, CRL_STATE.c.full_this_update, CRL_STATE.c.stale_since)
    return [dict(row) for row in (await connection.execute(select(*columns))).mappings()]
