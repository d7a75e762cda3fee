"""Issuance policies: the enabled set the engine loads, and the inventory pages it judges.

Create, change and delete go through the generic catalogue queries in :mod:`rows` with :data:`POLICIES`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.models import Policy, table_of
from certctl.store.repositories.certificates import CERTS, VERSIONS
from certctl.store.repositories.rows import ISSUERS, PROFILES

POLICIES = table_of(Policy)
NOT_LIVE = ("Archived", "Revoked")


async def list_enabled(connection: AsyncConnection) -> list[dict[str, Any]]:
    """Enabled policies by name: the order in which the engine evaluates them."""
    statement = select(POLICIES).where(POLICIES.c.enabled.is_(True)).order_by(POLICIES.c.name, POLICIES.c.id)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def inventory_page(
    connection: AsyncConnection, *, after_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` live certificates (not archived or revoked) with an id above ``after_id``, each with
    its current version's key and validity and its issuer's and profile's names (keyset paging by id)."""
    statement = (
        select(
            CERTS,
            VERSIONS.c.key_algorithm,
            VERSIONS.c.key_size,
            VERSIONS.c.not_before.label("version_not_before"),
            VERSIONS.c.not_after.label("version_not_after"),
            ISSUERS.c.name.label("issuer_name"),
            PROFILES.c.name.label("profile_name"),
        )
        .join(VERSIONS, VERSIONS.c.id == CERTS.c.current_version_id)
        .join(ISSUERS, ISSUERS.c.id == CERTS.c.issuer_id)
        .join(PROFILES, PROFILES.c.id == CERTS.c.profile_id)
        .where(CERTS.c.status.not_in(NOT_LIVE))
        .order_by(CERTS.c.id)
        .limit(limit)
    )
    if after_id is not None:
        statement = statement.where(CERTS.c.id > after_id)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]
