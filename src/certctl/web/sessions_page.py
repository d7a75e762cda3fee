"""The dashboard's sessions page: your own sessions (end any of them), and with ``auth.session.read``
everyone's (ending another person's needs ``auth.session.revoke``).

Sessions are named by their public handle; the page never shows a cookie or its digest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request
from starlette.responses import Response

from certctl.errors import NotFound

if TYPE_CHECKING:
    from certctl.web.routes import Dashboard

READ_ALL = "auth.session.read"
REVOKE_ANY = "auth.session.revoke"


class SessionsPage:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard

    async def show(self, request: Request) -> Response:
        session = await self.dashboard.require(request)
        if isinstance(session, Response):
            return session
        identity = self.dashboard.services.identity
        own = await identity.sessions(principal=(session.principal_type, session.principal_id))
        everyone = await identity.sessions() if session.can(READ_ALL) else []
        return await self.dashboard.render(
            request,
            "sessions.html",
            session=session,
            title="Sessions",
            section="sessions",
            own=own,
            everyone=everyone,
            current=session.handle,
            can_revoke_any=session.can(REVOKE_ANY),
        )

    async def revoke(self, request: Request, handle: str) -> Response:
        session = await self.dashboard.session_of(request)
        if session is None:
            return self.dashboard.see_other("/login?next=%2Fsessions")
        refused = await self.dashboard.csrf_refusal(request, session)
        if refused is not None:
            return refused
        identity = self.dashboard.services.identity
        try:
            target = await identity.session(handle)
        except NotFound:
            return await self.dashboard.error(request, session, 404, "Not found", "That session has ended.")
        mine = (target["principal_type"], target["principal_id"]) == (
            session.principal_type,
            session.principal_id,
        )
        if not mine and not session.can(REVOKE_ANY):
            message = (
                f"{session.who} lacks the permission '{REVOKE_ANY}' needed to end another person's session."
            )
            return await self.dashboard.error(request, session, 403, "Permission denied", message)
        await identity.revoke_session(handle, actor=session.actor, request=self.dashboard.audit_info(request))
        if handle == session.handle:
            return self.dashboard.see_other("/login")
        return self.dashboard.see_other("/sessions")
