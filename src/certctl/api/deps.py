"""Authentication and per-route permissions for ``/api/v1``.

Every route declares exactly one :class:`Need` (or :data:`PUBLIC`) in its ``dependencies``; a test walks
the app and fails on a route that declares none. Auth failures are audited.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request

from certctl.auth.agents import AgentPrincipal
from certctl.domain.agents import AgentStatus
from certctl.domain.rbac import PERMISSIONS
from certctl.errors import Forbidden, Gone, Unauthenticated
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.container import Services
from certctl.store.db import unit_of_work
from certctl.store.repositories import audit

log = logging.getLogger("certctl.auth")


def services_from(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def info_from(request: Request) -> RequestInfo:
    info = request.scope.get("state", {}).get("certctl_info")
    return info if isinstance(info, RequestInfo) else RequestInfo()


async def services_of(request: Request) -> Services:
    """Dependency (async, so it runs on the event loop rather than in the thread pool)."""
    return services_from(request)


async def request_info(request: Request) -> RequestInfo:
    return info_from(request)


async def record_auth_failure(
    request: Request, *, actor_name: str, reason: str, permission: str = ""
) -> None:
    services = services_from(request)
    record = audit_record(
        actor=Actor(
            id=actor_name, name=actor_name, type="unknown" if actor_name == "anonymous" else "api_key"
        ),
        action="auth.denied" if permission else "auth.failed",
        resource_type="route",
        resource_id=f"{request.method} {request.url.path}",
        at=services.context.clock.now(),
        request=info_from(request),
        details={"reason": reason, "permission": permission},
        outcome="denied" if permission else "failure",
    )
    try:
        async with unit_of_work(services.context.engine) as uow:
            await audit.append(uow.connection, [record])
    except Exception:  # the refusal must still be answered even if the trail cannot be written
        log.exception("could not write the audit row for an auth failure")


def bearer_secret(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def authenticate(request: Request) -> Actor:
    cached = request.scope.get("state", {}).get("certctl_actor")
    if isinstance(cached, Actor):
        return cached
    services = services_from(request)
    secret = bearer_secret(request)
    if secret is None:
        await record_auth_failure(request, actor_name="anonymous", reason="no bearer token")
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    principal = await services.authenticator.authenticate(secret, now=services.context.clock.now())
    if principal is None:
        await record_auth_failure(request, actor_name="anonymous", reason="unknown, expired or revoked key")
        raise Unauthenticated("the API key is not valid (unknown, expired or revoked)")
    actor = Actor(id=principal.key_id, name=principal.name, type="api_key", access=principal.access)
    request.scope.setdefault("state", {})["certctl_actor"] = actor
    return actor


class Need:
    """Route dependency: the caller must hold ``permission``. Returns the actor."""

    def __init__(self, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        self.permission = permission

    async def __call__(self, request: Request) -> Actor:
        actor = await authenticate(request)
        if self.permission not in actor.permissions:
            await record_auth_failure(
                request, actor_name=actor.name, reason="missing permission", permission=self.permission
            )
            raise Forbidden(f"this key lacks the permission {self.permission!r}")
        return actor


class Public:
    """Marks a route as deliberately unauthenticated (it authenticates in its own way, e.g. bootstrap)."""

    async def __call__(self) -> None:
        return None


class Authenticated:
    """Any valid principal, whatever it holds (its own identity, the permission catalogue)."""

    async def __call__(self, request: Request) -> Actor:
        return await authenticate(request)


PUBLIC = Depends(Public())


async def request_info_without_body(request: Request) -> RequestInfo:
    """For routes whose body carries a secret (a password, a client secret, a bootstrap token): the audit
    row must not keep even the body's SHA-256, which would allow guessing a low-entropy secret offline."""
    return info_from(request).without_body()


ServicesDep = Annotated[Services, Depends(services_of)]
InfoDep = Annotated[RequestInfo, Depends(request_info)]
SecretBodyInfoDep = Annotated[RequestInfo, Depends(request_info_without_body)]


class AgentSelf(Need):
    """Route dependency for an agent's own routes (``/api/v1/agents/{agent_id}/...``): the caller must
    present that agent's credential. Another agent's id is 403; a retired agent gets 410 and stops."""

    async def __call__(self, request: Request) -> AgentPrincipal:  # type: ignore[override]
        services = services_from(request)
        secret = bearer_secret(request)
        if secret is None:
            await record_auth_failure(request, actor_name="anonymous", reason="no agent credential")
            raise Unauthenticated("send the agent credential as 'Authorization: Bearer <credential>'")
        principal = await services.agent_authenticator.authenticate(secret, now=services.context.clock.now())
        if principal is None:
            await record_auth_failure(request, actor_name="anonymous", reason="unknown agent credential")
            raise Unauthenticated("the agent credential is not valid")
        if principal.agent_id != request.path_params.get("agent_id"):
            await record_auth_failure(
                request,
                actor_name=f"agent:{principal.name}",
                reason="another agent's route",
                permission=self.permission,
            )
            raise Forbidden("an agent can act only on its own routes")
        if principal.status == AgentStatus.RETIRED:
            raise Gone(f"agent {principal.name!r} is retired; stop polling")
        return principal
