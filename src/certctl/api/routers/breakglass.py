"""``/api/v1/auth/breakglass``: set, inspect, unlock and remove the break-glass account.

While ``CERTCTL_BREAKGLASS_ENABLED`` is off, a caller holding the route's permission gets the same 404 as
an unknown path; a caller without it gets the usual 401/403 either way, so nobody learns the setting
who could not change the account anyway. The password is accepted only in the ``PUT`` body, is never
echoed, and its request's body digest is kept out of the audit trail.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import Field, SecretStr, field_validator
from starlette.exceptions import HTTPException

from certctl.api.deps import InfoDep, Need, ServicesDep
from certctl.api.schemas import Strict
from certctl.api.serialize import jsonable
from certctl.auth.config import IdentityConfig
from certctl.services.audit import Actor
from certctl.services.breakglass import MAX_PASSWORD, MIN_PASSWORD

router = APIRouter(prefix="/api/v1", tags=["access"])


class BreakGlassCredential(Strict):
    username: str = Field(min_length=1, max_length=100, pattern=r"^[a-zA-Z0-9._-]+$")
    password: SecretStr = Field(description=f"{MIN_PASSWORD} to {MAX_PASSWORD} characters; never returned")

    @field_validator("password")
    @classmethod
    def _length(cls, value: SecretStr) -> SecretStr:
        if not MIN_PASSWORD <= len(value.get_secret_value()) <= MAX_PASSWORD:
            raise ValueError(f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
        return value


class EnabledNeed(Need):
    """The permission, then the setting: off answers 404 exactly like a path the app does not know."""

    async def __call__(self, request: Request) -> Actor:
        actor = await super().__call__(request)
        identity = getattr(request.app.state, "identity", None)
        if not isinstance(identity, IdentityConfig) or not identity.breakglass_enabled:
            raise HTTPException(status_code=404)
        return actor


@router.get("/auth/breakglass")
async def breakglass_status(
    services: ServicesDep, actor: Actor = Depends(EnabledNeed("auth.breakglass.read"))
) -> Any:
    """The account's name, lock state and last use (``{"configured": false}`` when none is set)."""
    return jsonable(await services.breakglass.status())


@router.put("/auth/breakglass")
async def set_breakglass(
    body: BreakGlassCredential,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(EnabledNeed("auth.breakglass.edit")),
) -> Any:
    """Create or replace the account (Argon2id hash); every break-glass session ends."""
    changed = await services.breakglass.set_credential(
        username=body.username, password=body.password.get_secret_value(), actor=actor, request=info
    )
    return jsonable(changed)


@router.post("/auth/breakglass/unlock")
async def unlock_breakglass(
    services: ServicesDep, info: InfoDep, actor: Actor = Depends(EnabledNeed("auth.breakglass.edit"))
) -> Any:
    """Lift a lockout now and reset the failure counter."""
    return jsonable(await services.breakglass.unlock(actor=actor, request=info))


@router.delete("/auth/breakglass", status_code=204)
async def remove_breakglass(
    services: ServicesDep, info: InfoDep, actor: Actor = Depends(EnabledNeed("auth.breakglass.edit"))
) -> Response:
    """Delete the account and end its sessions."""
    await services.breakglass.remove(actor=actor, request=info)
    return Response(status_code=204)
