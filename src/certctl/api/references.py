"""Request bodies and filters name related objects by id or by name; this turns them into ids."""

from __future__ import annotations

from typing import Any

from certctl.errors import ValidationFailed
from certctl.services.container import Services
from certctl.store.db import read_only
from certctl.store.repositories import rows


async def resolve_ref(services: Services, table: Any, kind: str, ref: str | None) -> str | None:
    """The id of the ``kind`` named ``ref`` (id or name); 422 when it does not exist, None for None."""
    if ref is None:
        return None
    async with read_only(services.context.engine) as connection:
        row = await rows.find(connection, table, ref)
    if row is None:
        raise ValidationFailed(f"{kind} {ref!r} does not exist")
    return str(row["id"])
