"""ACME profiles (draft-aaron-acme-profiles): the directory lists every ACME-enabled certificate profile
in ``meta.profiles`` (name -> description), and a newOrder may pick one with its ``profile`` field
instead of the profile whose directory it was sent to. An unknown or ACME-disabled name is
``invalidProfile``.
"""

from __future__ import annotations

from typing import Any

from certctl.services.acme import AcmeProfile, AcmeProfiles
from certctl.services.acme_errors import AcmeError
from certctl.services.context import ServiceContext
from certctl.store.db import autocommit_reads
from certctl.store.repositories import rows


def acme_enabled(row: dict[str, Any]) -> bool:
    return bool((row["rules"].get("acme") or {}).get("enabled", True))


async def advertised_profiles(context: ServiceContext) -> dict[str, str]:
    """``meta.profiles``: ACME-enabled profiles by name, with their descriptions."""
    async with autocommit_reads(context.engine) as connection:
        found = await rows.list_all(connection, rows.PROFILES)
    enabled = sorted((row for row in found if acme_enabled(row)), key=lambda r: str(r["name"]))
    return {row["name"]: row["description"] or row["name"] for row in enabled}


async def choose_profile(profiles: AcmeProfiles, *, directory: AcmeProfile, requested: Any) -> AcmeProfile:
    """The profile a newOrder is issued under: the one it names, else the directory's own."""
    if requested is None:
        return directory
    if not isinstance(requested, str) or not requested:
        raise AcmeError("malformed", "profile must be a profile name")
    if requested == directory.name:
        return directory
    try:
        return await profiles.resolve(requested)
    except AcmeError:
        raise AcmeError("invalidProfile", f"no ACME-enabled profile is named {requested!r}") from None
