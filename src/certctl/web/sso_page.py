"""The dashboard's single sign-on page: OpenID providers and their group mappings.

Reading needs ``auth.oidc.read``; adding a provider, switching one on or off, and adding or removing a
mapping need ``auth.oidc.edit`` and the session's CSRF token, like every other button. A client secret
typed here goes to the service, which seals it; the page never shows one back. The page also shows the
redirect and back-channel logout URIs to register at the provider.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.responses import Response

from certctl.domain.rbac import BUILTIN_ROLES, ScopeType
from certctl.errors import Conflict, NotFound, ValidationFailed
from certctl.services.identity import ProviderSettings, public_provider

if TYPE_CHECKING:
    from certctl.web.routes import Dashboard
    from certctl.web.sessions import WebSession

READ = "auth.oidc.read"
EDIT = "auth.oidc.edit"
BACK = "/sso"


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.replace("\n", ",").split(",") if part.strip()]


class SsoPage:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def show(self, request: Request) -> Response:
        session = await self.dashboard.require_permission(request, READ, purpose="to see sign-in providers")
        if isinstance(session, Response):
            return session
        return await self._render(request, session)

    async def _render(
        self, request: Request, session: WebSession, *, error: str | None = None, status: int = 200
    ) -> Response:
        identity = self.dashboard.services.identity
        providers = [public_provider(p) for p in await identity.providers()]
        mappings = {p["id"]: await identity.mappings(p["id"]) for p in providers}
        roles = sorted(BUILTIN_ROLES) + [
            r["name"] for r in await self.dashboard.services.access.list_roles() if not r.get("builtin")
        ]
        base = str(request.base_url).rstrip("/")
        return await self.dashboard.render(
            request,
            "sso.html",
            session=session,
            status=status,
            title="Single sign-on",
            section="sso",
            providers=providers,
            mappings=mappings,
            roles=roles,
            can_edit=session.can(EDIT),
            error=error,
            redirect_uri=f"{base}/auth/oidc/callback",
            logout_uri=f"{base}/auth/oidc/back-channel-logout",
            post_logout_uri=f"{base}/login",
        )

    async def _act(self, request: Request, action: Any) -> Response:
        from certctl.web.routes import read_form

        dashboard = self.dashboard
        session = await dashboard.require_action(
            request, EDIT, purpose="to change sign-in providers", back=BACK
        )
        if isinstance(session, Response):
            return session
        form = await read_form(request)
        try:
            await action(session, form)
        except NotFound as exc:
            return await self._render(request, session, error=exc.message, status=404)
        except Conflict as exc:
            return await self._render(request, session, error=exc.message, status=409)
        except ValidationFailed as exc:
            return await self._render(request, session, error=exc.message, status=422)
        return dashboard.see_other(BACK)

    async def add_provider(self, request: Request) -> Response:
        async def create(session: WebSession, form: dict[str, str]) -> None:
            settings = ProviderSettings(
                issuer=form.get("issuer", ""),
                client_id=form.get("client_id", ""),
                client_secret=form.get("client_secret") or None,
                display_name=form.get("display_name") or None,
                groups_claim=form.get("groups_claim") or None,
                allowed_email_domains=_list(form.get("email_domains", "")),
            )
            await self.dashboard.services.identity.create_provider(
                name=form.get("name", ""),
                settings=settings,
                actor=session.actor,
                request=self.dashboard.audit_info(request).without_body(),
            )

        return await self._act(request, create)

    async def switch(self, request: Request, name: str, state: str) -> Response:
        if state not in ("enable", "disable"):
            return await self.dashboard.error(request, None, 404, "Not found", "There is no such page.")

        async def change(session: WebSession, _form: dict[str, str]) -> None:
            await self.dashboard.services.identity.update_provider(
                name,
                settings=ProviderSettings(enabled=state == "enable"),
                actor=session.actor,
                request=self.dashboard.audit_info(request),
            )

        return await self._act(request, change)

    async def add_mapping(self, request: Request, name: str) -> Response:
        async def add(session: WebSession, form: dict[str, str]) -> None:
            try:
                scope = ScopeType(form.get("scope", "global"))
            except ValueError:
                raise ValidationFailed("scope must be global, profile or issuer") from None
            await self.dashboard.services.identity.add_mapping(
                name,
                group=form.get("group", ""),
                role=form.get("role", ""),
                scope=scope,
                scope_ref=form.get("scope_id") or None,
                actor=session.actor,
                request=self.dashboard.audit_info(request),
            )

        return await self._act(request, add)

    async def remove_mapping(self, request: Request, name: str, mapping_id: str) -> Response:
        async def remove(session: WebSession, _form: dict[str, str]) -> None:
            await self.dashboard.services.identity.remove_mapping(
                name, mapping_id, actor=session.actor, request=self.dashboard.audit_info(request)
            )

        return await self._act(request, remove)
