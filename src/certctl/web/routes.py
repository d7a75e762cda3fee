"""The dashboard: server-rendered HTML pages over the same services as the API, outside ``/api/v1``.

Pages are plain HTML with htmx for the live search (no build step, no inline script or style, so a strict
Content-Security-Policy holds). Every page needs a signed-in session holding ``cert.read``; a visitor
without a session is sent to ``/login``, a session without the permission sees a 403 page. Pages beyond
the inventory (approvals, jobs, notifications) also need the API's read permission for what they show,
and their buttons post a form that must carry the session's CSRF token and the API's permission for the
action.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from certctl.auth.config import IdentityConfig
from certctl.auth.session_keys import SigningKeys
from certctl.errors import NotFound, ValidationFailed
from certctl.services.audit import RequestInfo
from certctl.services.container import Services
from certctl.store.repositories.certificates import CertificateQuery
from certctl.web import sessions
from certctl.web.approvals import ApprovalsPage
from certctl.web.jobs import JobsPage
from certctl.web.notifications import NotificationsPage
from certctl.web.oidc import OidcLogin
from certctl.web.oidc import install as install_oidc
from certctl.web.pages import (
    STATUSES,
    ListFilters,
    build_timeline,
    make_environment,
    names_by_id,
    relative_days,
    static_files,
    weekly_counts,
)
from certctl.web.sessions import WebSession
from certctl.web.sessions_page import SessionsPage
from certctl.web.sso_page import SsoPage

CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
PAGE_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "Vary": "Cookie, HX-Request"}
READ = "cert.read"
NEXT_ALLOWED = ("/dashboard", "/certificates", "/approvals", "/jobs", "/notifications", "/sessions", "/sso")
FORM_LIMIT = 16_384


def install(
    app: FastAPI, services: Services, identity: IdentityConfig | None = None, keys: SigningKeys | None = None
) -> Dashboard:
    """Add the dashboard routes (hidden from the OpenAPI schema) to ``app``."""
    identity = identity or IdentityConfig()
    dashboard = Dashboard(services, identity, keys)
    jobs, notifications = JobsPage(dashboard), NotificationsPage(dashboard)
    sessions_page, sso_page = SessionsPage(dashboard), SsoPage(dashboard)
    for path, endpoint, methods in (
        ("/", dashboard.root, ["GET"]),
        ("/login", dashboard.login_form, ["GET"]),
        ("/login", dashboard.login, ["POST"]),
        ("/logout", dashboard.logout, ["POST"]),
        ("/dashboard", dashboard.overview, ["GET"]),
        ("/certificates", dashboard.certificate_list, ["GET"]),
        ("/certificates/{ref}", dashboard.certificate_detail, ["GET"]),
        ("/approvals", ApprovalsPage(dashboard).show, ["GET"]),
        ("/jobs", jobs.list, ["GET"]),
        ("/jobs/{job_id}", jobs.detail, ["GET"]),
        ("/jobs/{job_id}/cancel", jobs.cancel, ["POST"]),
        ("/notifications", notifications.show, ["GET"]),
        ("/notifications/deliveries/{job_id}/requeue", notifications.requeue, ["POST"]),
        ("/sso", sso_page.show, ["GET"]),
        ("/sso/providers", sso_page.add_provider, ["POST"]),
        ("/sso/providers/{name}/mappings", sso_page.add_mapping, ["POST"]),
        ("/sso/providers/{name}/mappings/{mapping_id}/remove", sso_page.remove_mapping, ["POST"]),
        ("/sso/providers/{name}/{state}", sso_page.switch, ["POST"]),
        ("/sessions", sessions_page.show, ["GET"]),
        ("/sessions/{handle}/revoke", sessions_page.revoke, ["POST"]),
        ("/static/{name}", dashboard.static, ["GET"]),
    ):
        app.add_api_route(path, endpoint, methods=methods, include_in_schema=False)
    dashboard.oidc = install_oidc(app, dashboard)
    from certctl.web.breakglass import install as install_breakglass  # it imports this module

    install_breakglass(app, dashboard)
    return dashboard


def client_meta(request: Request) -> sessions.ClientMeta:
    host = request.client.host if request.client else ""
    return sessions.ClientMeta(ip=host, user_agent=request.headers.get("user-agent", "")[:200])


def request_info(request: Request) -> RequestInfo:
    info = request.scope.get("state", {}).get("certctl_info")
    return info if isinstance(info, RequestInfo) else RequestInfo()


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form (the only kind the dashboard posts), first value per field."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    body = await request.body()
    if len(body) > FORM_LIMIT:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {name: values[0] for name, values in parsed.items()}


def safe_next(target: str | None) -> str:
    """Only our own pages: never an absolute or scheme-relative URL (no open redirect)."""
    if not target or len(target) > 1000 or "\\" in target or "//" in target:
        return "/dashboard"
    if any(target == p or target.startswith((p + "/", p + "?")) for p in NEXT_ALLOWED):
        return target
    return "/dashboard"


def is_fragment_request(request: Request) -> bool:
    headers = request.headers
    return headers.get("hx-request") == "true" and headers.get("hx-history-restore-request") != "true"


class Dashboard:
    """One instance per app: the services, the session store, the templates and the static files."""

    def __init__(
        self, services: Services, identity: IdentityConfig | None = None, keys: SigningKeys | None = None
    ) -> None:
        self.services = services
        self.identity = identity or IdentityConfig()
        self.store = sessions.SessionStore(
            services, self.identity.session, keys, breakglass_enabled=self.identity.breakglass_enabled
        )
        self.oidc: OidcLogin | None = None
        self.assets = static_files()
        self.env = make_environment(self.assets)

    async def session_of(self, request: Request) -> WebSession | None:
        return await self.store.resolve(request.cookies.get(sessions.SESSION_COOKIE), client_meta(request))

    async def render(
        self,
        request: Request,
        template: str,
        *,
        session: WebSession | None = None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """A page with the security headers; a signed-in page also carries the session's CSRF token."""
        csrf_token = request.cookies.get(sessions.CSRF_COOKIE)
        rotated = False
        if session is not None and not sessions.token_matches(csrf_token, session.csrf_sha256):
            session, csrf_token = await self.store.rotate_csrf(session)
            rotated = True
        now = self.services.context.clock.now()
        values: dict[str, Any] = {"title": "", "section": ""} | context
        html = self.env.get_template(template).render(
            session=session, csrf_token=csrf_token if session is not None else None, now=now, **values
        )
        response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
        if session is not None and rotated and csrf_token:
            lifetime = session.expires_at - now
            sessions.set_cookie(
                response, sessions.CSRF_COOKIE, csrf_token, lifetime=lifetime, http_only=False
            )
        return response

    async def error(
        self, request: Request, session: WebSession | None, status: int, title: str, message: str
    ) -> Response:
        return await self.render(
            request, "error.html", session=session, status=status, title=title, message=message, code=status
        )

    async def require(self, request: Request) -> WebSession | Response:
        """The session allowed to read pages, or the response to send instead (sign-in or 403)."""
        session = await self.session_of(request)
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            login = f"/login?next={quote(safe_next(target), safe='')}"
            if request.headers.get("hx-request") == "true":
                return Response(status_code=204, headers={"HX-Redirect": login, **PAGE_HEADERS})
            response = RedirectResponse(login, status_code=303, headers=PAGE_HEADERS)
            if request.cookies.get(sessions.SESSION_COOKIE):
                clear_session_cookies(response)
            return response
        if not session.can(READ):
            message = (
                f"{session.who} is signed in but lacks the permission '{READ}', which every "
                "dashboard page needs. Ask an administrator for a key with the viewer, operator or admin "
                "role."
            )
            return await self.error(request, session, 403, "Permission denied", message)
        return session

    async def require_permission(
        self, request: Request, permission: str, *, purpose: str
    ) -> WebSession | Response:
        """Like :meth:`require`, and the session must also hold ``permission`` (``purpose`` says for what)."""
        session = await self.require(request)
        if isinstance(session, Response) or session.can(permission):
            return session
        message = f"{session.who} lacks the permission '{permission}' needed {purpose}."
        return await self.error(request, session, 403, "Permission denied", message)

    async def csrf_refusal(self, request: Request, session: WebSession) -> Response | None:
        """The 403 page for a POST without the session's CSRF token (form field or header), else None."""
        form = await read_form(request)
        presented = request.headers.get(sessions.CSRF_HEADER) or form.get(sessions.CSRF_FIELD)
        if sessions.token_matches(presented, session.csrf_sha256):
            return None
        message = "This request could not be verified (its CSRF token is missing or wrong). Reload the page."
        return await self.error(request, session, 403, "Request refused", message)

    async def require_action(
        self, request: Request, permission: str, *, purpose: str, back: str
    ) -> WebSession | Response:
        """A button's POST: a live session (else sign-in, then back to the page ``back``), the session's
        CSRF token in the form or header, and ``cert.read`` plus ``permission``."""
        session = await self.session_of(request)
        if session is None:
            response = RedirectResponse(
                f"/login?next={quote(safe_next(back), safe='')}", status_code=303, headers=PAGE_HEADERS
            )
            if request.cookies.get(sessions.SESSION_COOKIE):
                clear_session_cookies(response)
            return response
        refused = await self.csrf_refusal(request, session)
        if refused is not None:
            return refused
        for needed in (READ, permission):
            if not session.can(needed):
                message = f"{session.who} lacks the permission '{needed}' needed {purpose}."
                return await self.error(request, session, 403, "Permission denied", message)
        return session

    @staticmethod
    def audit_info(request: Request) -> RequestInfo:
        """The request's client and id for the audit row of an action taken from a page."""
        return request_info(request)

    @staticmethod
    def see_other(target: str) -> Response:
        """After a button's POST: back to a page with a GET (so a reload does not post again)."""
        return RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)

    async def root(self, request: Request) -> Response:
        session = await self.session_of(request)
        return RedirectResponse("/dashboard" if session else "/login", status_code=303, headers=PAGE_HEADERS)

    async def login_form(self, request: Request) -> Response:
        target = safe_next(request.query_params.get("next"))
        if await self.session_of(request) is not None:
            return RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)
        return await self.show_login(request, target=target, error=None, status=200)

    async def show_login(self, request: Request, *, target: str, error: str | None, status: int) -> Response:
        """The sign-in form with a fresh double-submit token (cookie and hidden field hold the same value)."""
        token = sessions.new_token()
        providers = await self.services.identity.providers(enabled_only=True)
        response = await self.render(
            request,
            "login.html",
            status=status,
            login_token=token,
            next=target,
            error=error,
            title="Sign in",
            providers=[(p["name"], p["display_name"] or p["name"]) for p in providers],
            start_query=urlencode({"next": target}),
        )
        lifetime = sessions.LOGIN_FORM_LIFETIME
        sessions.set_cookie(response, sessions.LOGIN_COOKIE, token, lifetime=lifetime, http_only=True)
        return response

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        target = safe_next(form.get("next"))
        cookie = request.cookies.get(sessions.LOGIN_COOKIE, "")
        presented = form.get(sessions.CSRF_FIELD, "")
        if not cookie or not presented or not hmac.compare_digest(cookie.encode(), presented.encode()):
            message = "The sign-in form expired or was not sent from this site. Please try again."
            return await self.show_login(request, target=target, error=message, status=403)
        created = await self.store.sign_in(
            form.get("api_key", ""),
            request=request_info(request),
            client=client_meta(request),
            replacing=request.cookies.get(sessions.SESSION_COOKIE),
        )
        if created is None:
            message = "That API key was not accepted: it is unknown, expired or revoked."
            return await self.show_login(request, target=target, error=message, status=401)
        response = RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)
        self.set_session_cookies(response, created)
        sessions.clear_cookie(response, sessions.LOGIN_COOKIE, http_only=True)
        return response

    def set_session_cookies(self, response: Response, created: sessions.NewSession) -> None:
        lifetime = self.store.config.lifetime
        sessions.set_cookie(
            response, sessions.SESSION_COOKIE, created.token, lifetime=lifetime, http_only=True
        )
        sessions.set_cookie(
            response, sessions.CSRF_COOKIE, created.csrf_token, lifetime=lifetime, http_only=False
        )

    async def logout(self, request: Request) -> Response:
        session = await self.session_of(request)
        if session is None:
            response = RedirectResponse("/login", status_code=303, headers=PAGE_HEADERS)
            clear_session_cookies(response)
            return response
        refused = await self.csrf_refusal(request, session)
        if refused is not None:
            return refused
        await self.store.sign_out(session, request=request_info(request))
        elsewhere = None
        if self.oidc is not None and session.provider_id:
            elsewhere = await self.oidc.end_session_url(request, session.provider_id)
        response = RedirectResponse(elsewhere or "/login", status_code=303, headers=PAGE_HEADERS)
        clear_session_cookies(response)
        return response

    async def overview(self, request: Request) -> Response:
        session = await self.require(request)
        if isinstance(session, Response):
            return session
        context = self.services.context
        now = context.clock.now()
        by_status, upcoming = await self.services.inventory.overview(actor=session.actor)
        issuer_names, profile_names = await self.catalog_names()
        recent, _ = await self.services.inventory.list(
            CertificateQuery(sort="created_at", descending=True, limit=8), actor=session.actor
        )
        timeline = build_timeline(
            expired=by_status.get("Expired", 0),
            weeks=weekly_counts(upcoming, now),
            now=now,
            soon=context.expiring_within,
        )
        return await self.render(
            request,
            "dashboard.html",
            session=session,
            title="Overview",
            section="dashboard",
            counts={status: by_status.get(status, 0) for status in STATUSES},
            managed=sum(n for status, n in by_status.items() if status != "Archived"),
            timeline=timeline,
            recent=recent,
            issuer_names=issuer_names,
            profile_names=profile_names,
        )

    async def certificate_list(self, request: Request) -> Response:
        session = await self.require(request)
        if isinstance(session, Response):
            return session
        filters = ListFilters.from_params(request.query_params)
        notice = None
        try:
            items, next_cursor = await self.services.inventory.list(filters.query(), actor=session.actor)
        except ValidationFailed:
            notice = "That page link is no longer valid; showing the first page."
            filters = ListFilters.from_params({**request.query_params, "cursor": ""})
            items, next_cursor = await self.services.inventory.list(filters.query(), actor=session.actor)
        issuers, profiles = await self.services.issuers.list(), await self.services.profiles.list()
        context: dict[str, Any] = {
            "filters": filters,
            "items": items,
            "next_cursor": next_cursor,
            "relative": relative_days,
            "issuer_names": names_by_id(issuers),
            "profile_names": names_by_id(profiles),
        }
        if is_fragment_request(request):
            return await self.render(request, "_fragment.html", session=session, oob=True, **context)
        return await self.render(
            request,
            "certificates.html",
            session=session,
            title="Certificates",
            section="certificates",
            notice=notice,
            oob=False,
            issuer_options=issuers,
            profile_options=profiles,
            **context,
        )

    async def certificate_detail(self, request: Request, ref: str) -> Response:
        session = await self.require(request)
        if isinstance(session, Response):
            return session
        try:
            certificate = await self.services.inventory.get(ref, actor=session.actor)
            versions = await self.services.inventory.versions(ref, actor=session.actor)
            deployments = await self.services.deployments.history(
                certificate_ref=ref, actor=session.actor, limit=20
            )
            targets = {
                t["id"]: t["name"]
                for t in await self.services.deployments.targets_of(certificate_ref=ref, actor=session.actor)
            }
        except NotFound:
            return await self.error(request, session, 404, "Not found", f"There is no certificate {ref!r}.")
        issuer_names, profile_names = await self.catalog_names()
        owners = names_by_id(await self.services.owners.list())
        teams = names_by_id(await self.services.teams.list())
        return await self.render(
            request,
            "certificate.html",
            session=session,
            title=certificate["name"],
            section="certificates",
            cert=certificate,
            current=certificate["current_version"],
            versions=versions,
            deployments=deployments,
            target_names=targets,
            owner_name=owners.get(certificate.get("owner_id") or "", ""),
            team_name=teams.get(certificate.get("team_id") or "", ""),
            relative=relative_days,
            issuer_names=issuer_names,
            profile_names=profile_names,
        )

    async def static(self, name: str) -> Response:
        found = self.assets.get(name)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        content, media_type = found
        return Response(content, media_type=media_type, headers={"Cache-Control": "public, max-age=604800"})

    async def catalog_names(self) -> tuple[dict[str, str], dict[str, str]]:
        """Issuer and profile names by id, to show names instead of ids in tables."""
        return names_by_id(await self.services.issuers.list()), names_by_id(
            await self.services.profiles.list()
        )


def clear_session_cookies(response: Response) -> None:
    sessions.clear_cookie(response, sessions.SESSION_COOKIE, http_only=True)
    sessions.clear_cookie(response, sessions.CSRF_COOKIE, http_only=False)
