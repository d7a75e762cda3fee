"""``/api/v1/auth/oidc`` (OpenID providers and group mappings), ``/api/v1/auth/users`` (federated users),
``/api/v1/auth/sessions`` (dashboard sessions) and ``/api/v1/auth/session-keys`` (cookie signing keys).

A provider's client secret is write-only: answers say only whether one is set. Deleting a provider that
still has live sessions answers 409. Group mapping changes end the sessions of that group's members, so
the next request signs them in again with their new roles.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from certctl.api.deps import Authenticated, InfoDep, Need, SecretBodyInfoDep, ServicesDep
from certctl.api.schemas import Strict
from certctl.api.serialize import jsonable
from certctl.domain.rbac import ScopeType
from certctl.errors import NotFound
from certctl.services.audit import Actor
from certctl.services.identity import ProviderSettings, public_provider

router = APIRouter(prefix="/api/v1/auth", tags=["identity"])

GroupFormat = Literal["list", "comma", "space"]


class ProviderFields(Strict):
    issuer: str | None = Field(
        default=None, max_length=500, description="Issuer URL (https; http on loopback)."
    )
    client_id: str | None = Field(default=None, max_length=255)
    client_secret: str | None = Field(
        default=None, max_length=1024, description="Write-only; sealed at rest. Empty string clears it."
    )
    display_name: str | None = Field(default=None, max_length=200, description="Shown on the sign-in page.")
    scopes: list[str] | None = Field(default=None, max_length=20, description="Must include openid.")
    groups_claim: str | None = Field(default=None, max_length=200, description="Claim name or dotted path.")
    groups_format: GroupFormat | None = Field(default=None, description="list, comma or space separated.")
    allowed_email_domains: list[str] | None = Field(
        default=None, max_length=100, description="Only users with an e-mail in these domains (empty: any)."
    )
    enabled: bool | None = None

    def settings(self) -> ProviderSettings:
        return ProviderSettings(**self.model_dump())


class ProviderCreate(ProviderFields):
    name: str = Field(min_length=1, max_length=100, description="Short name, used in URLs.")
    issuer: str = Field(min_length=1, max_length=500)
    client_id: str = Field(min_length=1, max_length=255)


class MappingCreate(Strict):
    group: str = Field(min_length=1, max_length=255, description="Group name as the provider sends it.")
    role: str = Field(min_length=1, max_length=100)
    scope: ScopeType = ScopeType.GLOBAL
    scope_id: str | None = Field(default=None, max_length=200, description="Profile or issuer (id or name).")


class PrincipalRef(Strict):
    principal_type: Literal["api_key", "user", "breakglass"]
    principal_id: str = Field(min_length=1, max_length=100)


@router.get("/oidc/providers")
async def list_providers(services: ServicesDep, _actor: Actor = Depends(Need("auth.oidc.read"))) -> Any:
    return {"items": jsonable([public_provider(p) for p in await services.identity.providers()])}


@router.post("/oidc/providers", status_code=201)
async def create_provider(
    body: ProviderCreate,
    services: ServicesDep,
    info: SecretBodyInfoDep,
    actor: Actor = Depends(Need("auth.oidc.edit")),
) -> Any:
    """Add a provider. Register ``https://<this server>/auth/oidc/callback`` as its redirect URI and
    ``https://<this server>/auth/oidc/back-channel-logout`` as its back-channel logout URI."""
    fields = body.model_dump(exclude={"name"})
    created = await services.identity.create_provider(
        name=body.name, settings=ProviderSettings(**fields), actor=actor, request=info
    )
    return jsonable(created)


@router.get("/oidc/providers/{ref}")
async def get_provider(
    ref: str, services: ServicesDep, _actor: Actor = Depends(Need("auth.oidc.read"))
) -> Any:
    return jsonable(public_provider(await services.identity.provider(ref)))


@router.patch("/oidc/providers/{ref}")
async def update_provider(
    ref: str,
    body: ProviderFields,
    services: ServicesDep,
    info: SecretBodyInfoDep,
    actor: Actor = Depends(Need("auth.oidc.edit")),
) -> Any:
    updated = await services.identity.update_provider(
        ref, settings=body.settings(), actor=actor, request=info
    )
    return jsonable(updated)


@router.delete("/oidc/providers/{ref}", status_code=204)
async def delete_provider(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("auth.oidc.edit"))
) -> Response:
    """409 while the provider has live sessions (revoke them, or disable the provider, first)."""
    await services.identity.delete_provider(ref, actor=actor, request=info)
    return Response(status_code=204)


@router.get("/oidc/providers/{ref}/mappings")
async def list_mappings(
    ref: str, services: ServicesDep, _actor: Actor = Depends(Need("auth.oidc.read"))
) -> Any:
    return {"items": jsonable(await services.identity.mappings(ref))}


@router.post("/oidc/providers/{ref}/mappings", status_code=201)
async def add_mapping(
    ref: str,
    body: MappingCreate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("auth.oidc.edit")),
) -> Any:
    """Members of ``group`` hold ``role`` (on ``scope``) while signed in; applies without a restart."""
    created = await services.identity.add_mapping(
        ref,
        group=body.group,
        role=body.role,
        scope=body.scope,
        scope_ref=body.scope_id,
        actor=actor,
        request=info,
    )
    return jsonable(created)


@router.delete("/oidc/providers/{ref}/mappings/{mapping_id}", status_code=204)
async def remove_mapping(
    ref: str,
    mapping_id: str,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("auth.oidc.edit")),
) -> Response:
    await services.identity.remove_mapping(ref, mapping_id, actor=actor, request=info)
    return Response(status_code=204)


@router.get("/users")
async def list_users(
    services: ServicesDep,
    _actor: Actor = Depends(Need("auth.user.read")),
    provider: str | None = Query(default=None, max_length=100),
) -> Any:
    """People who signed in through a provider, most recent first, with the groups of their last sign-in."""
    return {"items": jsonable(await services.identity.users(provider_ref=provider))}


@router.get("/users/{user_id}")
async def get_user(
    user_id: str, services: ServicesDep, _actor: Actor = Depends(Need("auth.user.read"))
) -> Any:
    """One user, with the roles granted to it directly (group mappings are on the provider)."""
    return jsonable(await services.identity.user(user_id))


@router.delete("/users/{user_id}/grants/{grant_id}", status_code=204)
async def remove_user_grant(
    user_id: str,
    grant_id: str,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("auth.user.edit")),
) -> Response:
    """Take a directly granted role (e.g. the OIDC first admin's) from a user; its sessions end."""
    await services.identity.remove_user_grant(user_id, grant_id, actor=actor, request=info)
    return Response(status_code=204)


@router.get("/sessions")
async def list_sessions(
    services: ServicesDep,
    _actor: Actor = Depends(Need("auth.session.read")),
    principal_type: Literal["api_key", "user", "breakglass"] | None = Query(default=None),
    principal_id: str | None = Query(default=None, max_length=100),
) -> Any:
    """Live dashboard sessions (handle, principal, client, times), never their cookies."""
    principal = (principal_type, principal_id) if principal_type and principal_id else None
    return {"items": jsonable(await services.identity.sessions(principal=principal))}


@router.get("/sessions/mine")
async def my_sessions(services: ServicesDep, actor: Actor = Depends(Authenticated())) -> Any:
    """The caller's own dashboard sessions (an API key's sessions opened with that key)."""
    return {"items": jsonable(await services.identity.sessions(principal=("api_key", actor.id)))}


@router.delete("/sessions/mine/{handle}", status_code=204)
async def revoke_my_session(
    handle: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Authenticated())
) -> Response:
    row = await services.identity.session(handle)
    if (row["principal_type"], row["principal_id"]) != ("api_key", actor.id):
        raise NotFound(f"session {handle!r} does not exist")
    await services.identity.revoke_session(handle, actor=actor, request=info)
    return Response(status_code=204)


@router.delete("/sessions/{handle}", status_code=204)
async def revoke_session(
    handle: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("auth.session.revoke"))
) -> Response:
    await services.identity.revoke_session(handle, actor=actor, request=info)
    return Response(status_code=204)


@router.post("/sessions/revoke")
async def revoke_sessions_of(
    body: PrincipalRef,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("auth.session.revoke")),
) -> Any:
    """End every session of one principal (an API key, an OIDC user or the break-glass account)."""
    ended = await services.identity.revoke_sessions_of(
        body.principal_type, body.principal_id, actor=actor, request=info, reason="revoked by an operator"
    )
    return {"sessions_ended": ended}


@router.get("/session-keys")
async def list_session_keys(request: Request, _actor: Actor = Depends(Need("auth.session.read"))) -> Any:
    """Cookie signing keys: ids and dates only."""
    return {"items": jsonable(await request.app.state.session_keys.describe())}


@router.post("/session-keys/rotate", status_code=201)
async def rotate_session_key(
    request: Request,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("auth.session.revoke")),
) -> Any:
    """A new signing key; cookies signed by the previous one stay valid for one session lifetime."""
    key_id = await request.app.state.session_keys.rotate()
    await services.identity.audit_key_rotation(key_id, actor=actor, request=info)
    return {"id": key_id}
