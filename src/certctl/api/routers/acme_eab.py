"""``/api/v1/acme/eab-keys``: external account binding keys of the ACME server (RFC 8555 §7.3.4).

Creating a key answers its HMAC key once (base64url); listing never shows it. Revoking a key stops it from
binding a new account.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.schemas import NAME_OPT, Strict
from certctl.api.serialize import jsonable
from certctl.services.audit import Actor

router = APIRouter(prefix="/api/v1/acme/eab-keys", tags=["acme"])


class EabKeyCreate(Strict):
    profile: str = Field(min_length=1, max_length=200, description="Profile (id or name) the key binds to.")
    name: str | None = NAME_OPT
    expires_in_hours: int | None = Field(
        default=None, ge=1, le=24 * 3650, description="Unused keys stop binding after this many hours."
    )


@router.post("", status_code=201)
async def create_eab_key(
    body: EabKeyCreate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("acme.admin")),
) -> Any:
    """A new key for one profile's ACME directory: ``kid`` and ``hmac_key`` (shown only now)."""
    expires_in = timedelta(hours=body.expires_in_hours) if body.expires_in_hours else None
    created = await services.acme.eab.create(
        profile=body.profile, name=body.name, expires_in=expires_in, actor=actor, request=info
    )
    return jsonable(created.key) | {"hmac_key": created.hmac_key}


@router.get("")
async def list_eab_keys(
    services: ServicesDep,
    _actor: Actor = Depends(Need("acme.admin")),
    profile: str | None = Query(default=None, max_length=200, description="Only keys of this profile."),
) -> Any:
    """Every key, newest first, with the account it bound (never the HMAC key)."""
    return {"items": jsonable(await services.acme.eab.list_keys(profile=profile))}


@router.delete("/{kid}")
async def revoke_eab_key(
    kid: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("acme.admin"))
) -> Any:
    """Revoke a key (409 when it is already revoked); an account it bound keeps working."""
    return jsonable(await services.acme.eab.revoke(kid=kid, actor=actor, request=info))
