"""The break-glass sign-in page: ``GET`` and ``POST /auth/breakglass``.

Off by default (``CERTCTL_BREAKGLASS_ENABLED``); then both answer exactly what an unknown path answers
(404), so a scan cannot tell the feature exists. When on:

* each client address gets five tries a minute (429 with ``Retry-After`` past that, audited once per
  burst); the budget is counted before anything else, so even a forged form spends it;
* the form carries the same double-submit sign-in token as ``/login``;
* every refusal shows one message whatever the cause, so the page does not reveal whether the name
  exists or the account is locked (the audit row records the real reason);
* a success opens a dashboard session for the break-glass account (global admin), audited as
  ``breakglass.login`` and notified as ``breakglass.used``.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from certctl.auth.config import IdentityConfig
from certctl.domain.rbac import global_access
from certctl.services.breakglass import Refusal
from certctl.web import sessions
from certctl.web.routes import PAGE_HEADERS, Dashboard, client_meta, read_form, request_info

PATH = "/auth/breakglass"
REFUSED = (
    "Those credentials were not accepted. After five failures in a row the account locks for "
    "15 minutes; an administrator can unlock it sooner."
)


class BreakGlassLogin:
    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.service = dashboard.services.breakglass

    def ensure_enabled(self, request: Request) -> None:
        """Disabled: the same 404 as a path the app does not know."""
        identity = getattr(request.app.state, "identity", None)
        if not isinstance(identity, IdentityConfig):
            identity = self.dashboard.identity
        if not identity.breakglass_enabled:
            raise HTTPException(status_code=404)

    async def form(self, request: Request) -> Response:
        self.ensure_enabled(request)
        return await self.show(request, error=None, status=200)

    async def show(
        self, request: Request, *, error: str | None, status: int, headers: dict[str, str] | None = None
    ) -> Response:
        """The form with a fresh double-submit token (cookie and hidden field hold the same value)."""
        token = sessions.new_token()
        response = await self.dashboard.render(
            request, "breakglass.html", status=status, login_token=token, error=error, title="Break-glass"
        )
        response.headers.update(headers or {})
        lifetime = sessions.LOGIN_FORM_LIFETIME
        sessions.set_cookie(response, sessions.LOGIN_COOKIE, token, lifetime=lifetime, http_only=True)
        return response

    async def sign_in(self, request: Request) -> Response:
        self.ensure_enabled(request)
        client = client_meta(request)
        info = request_info(request).without_body()  # the body holds a password
        retry_after = self.service.limiter.admit(client.ip)
        if retry_after is not None:
            if self.service.limiter.first_refusal(client.ip):
                await self.service.audit_rate_limited(
                    client_ip=client.ip, retry_after=retry_after, request=info
                )
            message = f"Too many sign-in attempts from your address. Try again in {retry_after} seconds."
            return await self.show(
                request, error=message, status=429, headers={"Retry-After": str(retry_after)}
            )
        form = await read_form(request)
        cookie = request.cookies.get(sessions.LOGIN_COOKIE, "")
        presented = form.get(sessions.CSRF_FIELD, "")
        if not cookie or not presented or not hmac.compare_digest(cookie.encode(), presented.encode()):
            message = "The sign-in form expired or was not sent from this site. Please try again."
            return await self.show(request, error=message, status=403)
        store = self.dashboard.store
        replacing = request.cookies.get(sessions.SESSION_COOKIE)

        async def open_session(connection: AsyncConnection, username: str) -> sessions.NewSession:
            principal = sessions.SessionPrincipal(
                type="breakglass", id=username, name=username, access=global_access(["admin"])
            )
            return await store.open(
                principal,
                request=info,
                client=client,
                replacing=replacing,
                action="breakglass.login",
                details={"username": username, "client_ip": client.ip[:64]},
                connection=connection,
            )

        outcome = await self.service.authenticate(
            username=form.get("username", ""),
            password=form.get("password", ""),
            client_ip=client.ip,
            request=info,
            open_session=open_session,
        )
        if isinstance(outcome, Refusal):
            return await self.show(request, error=REFUSED, status=401)
        response = RedirectResponse("/dashboard", status_code=303, headers=PAGE_HEADERS)
        self.dashboard.set_session_cookies(response, outcome)
        sessions.clear_cookie(response, sessions.LOGIN_COOKIE, http_only=True)
        return response


def install(app: Any, dashboard: Dashboard) -> BreakGlassLogin:
    login = BreakGlassLogin(dashboard)
    app.add_api_route(PATH, login.form, methods=["GET"], include_in_schema=False)
    app.add_api_route(PATH, login.sign_in, methods=["POST"], include_in_schema=False)
    return login
