"""OCSP lookups: one certificate's status by (CA, serial), responder certificates, the revocation marker."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.models import OcspResponder, table_of
from certctl.store.repositories.certificates import VERSIONS
from certctl.store.repositories.revocations import CRL_STATE

RESPONDERS = table_of(OcspResponder)


async def version_status(
    connection: AsyncConnection, *, ca_id: str, serial_hex: str
) -> tuple[datetime | None, str | None] | None:
    """(revoked_at, reason) of the version this CA issued with that serial; None if it never did."""
    statement = select(VERSIONS.c.revoked_at, VERSIONS.c.revocation_reason).where(
        VERSIONS.c.issuer_ca_id == ca_id, VERSIONS.c.serial == serial_hex
    )
    row = (await connection.execute(statement)).first()
    return None if row is None else (row.revoked_at, row.revocation_reason)


async def revocation_marker(connection: AsyncConnection, ca_id: str) -> tuple[int, datetime | None] | None:
    """(last CRL number, stale since) of the CA: every revocation changes it (marked stale, then a new
    CRL number), so a replica that sees it change drops its cached OCSP responses for the CA."""
    statement = select(CRL_STATE.c.last_number, CRL_STATE.c.stale_since).where(CRL_STATE.c.ca_id == ca_id)
    row = (await connection.execute(statement)).first()
    return None if row is None else (int(row.last_number), row.stale_since)


async def latest_responder(connection: AsyncConnection, ca_id: str) -> dict[str, Any] | None:
    statement = (
        select(RESPONDERS)
        .where(RESPONDERS.c.ca_id == ca_id)
        .order_by(RESPONDERS.c.not_after.desc(), RESPONDERS.c.id.desc())
        .limit(1)
    )
    row = (await connection.execute(statement)).mappings().first()
    return dict(row) if row else None


async def add_responder(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(RESPONDERS).values(**values))
