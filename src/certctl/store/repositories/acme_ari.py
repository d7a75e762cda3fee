"""Named queries of ACME Renewal Information (RFC 9773): certificates by serial, per-issuer renew-by
deadlines, replacement orders, and renewals brought forward by a mass re-issuance."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.models import (
    AcmeOrder,
    CertificateVersion,
    IssuerRenewalDeadline,
    ManagedCertificate,
    table_of,
)

VERSIONS = table_of(CertificateVersion)
CERTS = table_of(ManagedCertificate)
ORDERS = table_of(AcmeOrder)
DEADLINES = table_of(IssuerRenewalDeadline)


async def versions_with_serial(connection: AsyncConnection, serial_hex: str) -> list[dict[str, Any]]:
    """Versions with this serial (lower-case hex, as stored), each with its managed certificate's
    ``issuer_id``, ``status``, ``current_version_id`` and ``renewal_due_at`` (prefixed ``cert_``)."""
    statement = (
        select(
            VERSIONS,
            CERTS.c.issuer_id.label("cert_issuer_id"),
            CERTS.c.status.label("cert_status"),
            CERTS.c.current_version_id.label("cert_current_version_id"),
            CERTS.c.renewal_due_at.label("cert_renewal_due_at"),
        )
        .join(CERTS, CERTS.c.id == VERSIONS.c.certificate_id)
        .where(VERSIONS.c.serial == serial_hex)
    )
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def deadline_of(connection: AsyncConnection, issuer_id: str) -> dict[str, Any] | None:
    row = (
        (await connection.execute(select(DEADLINES).where(DEADLINES.c.issuer_id == issuer_id)))
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def put_deadline(connection: AsyncConnection, values: dict[str, Any]) -> None:
    """The issuer's deadline, replacing an earlier one."""
    await connection.execute(delete(DEADLINES).where(DEADLINES.c.issuer_id == values["issuer_id"]))
    await connection.execute(insert(DEADLINES), values)


async def replacement_issued(connection: AsyncConnection, cert_id: str) -> bool:
    """True when an order naming ``cert_id`` in ``replaces`` already got its certificate."""
    statement = select(
        exists().where(ORDERS.c.replaces == cert_id, ORDERS.c.status.in_(("valid", "processing")))
    )
    return bool((await connection.execute(statement)).scalar())


async def renewals_after(
    connection: AsyncConnection, *, issuer_id: str, after: datetime, live_statuses: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Auto-renewed live certificates of the issuer whose renewal is not due by ``after``."""
    statement = select(CERTS.c.id, CERTS.c.renewal_due_at).where(
        CERTS.c.issuer_id == issuer_id,
        CERTS.c.auto_renew.is_(True),
        CERTS.c.status.in_(live_statuses),
        or_(CERTS.c.renewal_due_at.is_(None), CERTS.c.renewal_due_at > after),
    )
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def set_renewal_due(connection: AsyncConnection, certificate_id: str, due_at: datetime) -> None:
    await connection.execute(update(CERTS).where(CERTS.c.id == certificate_id).values(renewal_due_at=due_at))


async def count_live(connection: AsyncConnection, *, issuer_id: str, live_statuses: tuple[str, ...]) -> int:
    statement = select(func.count()).where(CERTS.c.issuer_id == issuer_id, CERTS.c.status.in_(live_statuses))
    return int((await connection.execute(statement)).scalar() or 0)
