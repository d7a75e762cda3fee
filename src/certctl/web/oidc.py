"""Dashboard sign-in with an OpenID Provider (authorization code flow with PKCE) and the provider's
back-channel logout.

How a sign-in is kept honest:

* ``/auth/oidc/{provider}/start`` sets a pre-login cookie (random, distinct from the session cookie,
  ``SameSite=Lax`` so it comes back on the provider's redirect) and stores a login row keyed by the
  SHA-256 of a random ``state``. The PKCE verifier and the ``nonce`` are HMACs of the state under the
  pre-login cookie's value: neither is stored, and neither can be rebuilt without that browser's cookie.
* ``/auth/oidc/callback`` consumes the login row once (a replayed or foreign ``state`` finds nothing),
  checks it belongs to this browser, checks the RFC 9207 ``iss`` parameter, redeems the code with the
  verifier and validates the ID token (``certctl.auth.oidc_tokens``). Groups map to roles; a user with
  no role is refused with a page saying so, and audited.
* The session cookie is set on a small page that then moves to the dashboard: a ``SameSite=Strict``
  cookie is not sent on a navigation that started at the provider's site.
* ``POST /auth/oidc/back-channel-logout`` validates the provider's logout token, refuses a replayed
  ``jti`` (unique row per provider), and ends the sessions it names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx2
from fastapi import Request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.responses import JSONResponse, RedirectResponse, Response

from certctl.auth.oidc_tokens import (
    Discovery,
    JwksCache,
    ProviderMetadata,
    TokenRejected,
    validate_id_token,
    validate_logout_token,
)
from certctl.auth.principals import load_user_access
from certctl.auth.session_keys import length_prefixed
from certctl.errors import NotFound, ValidationFailed
from certctl.services.audit import Actor, audit_record
from certctl.services.identity import SignedInUser, email_allowed, extract_groups
from certctl.store.db import unit_of_work
from certctl.store.models import OidcLoginState, OidcLogoutJti, table_of
from certctl.store.repositories import audit, web_sessions
from certctl.web import sessions

if TYPE_CHECKING:
    from certctl.web.routes import Dashboard

log = logging.getLogger("certctl.web.oidc")

PRELOGIN_COOKIE = "__Host-certctl_oidc"
LOGIN_WINDOW = timedelta(minutes=10)
LOGOUT_JTI_KEEP = timedelta(hours=1)
CALLBACK_PATH = "/auth/oidc/callback"
BACKCHANNEL_PATH = "/auth/oidc/back-channel-logout"
MAX_DOCUMENT = 1_048_576
LOGIN_STATES = table_of(OidcLoginState)
LOGOUT_JTIS = table_of(OidcLogoutJti)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def derive(browser: str, label: str, state: str) -> str:
    """A per-sign-in secret (PKCE verifier, nonce): HMAC-SHA256 of the state under the browser's cookie,
    43 characters of base64url (RFC 7636 §4.1 allows 43-128)."""
    message = length_prefixed(label.encode()) + length_prefixed(state.encode())
    digest = hmac.new(browser.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _text(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    return value if isinstance(value, str) else ""


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, read only to pick the provider whose keys must then verify it."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > 16_384:
        return {}
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


class OidcLogin:
    """The sign-in, callback, RP-initiated logout and back-channel logout endpoints."""

    def __init__(self, dashboard: Dashboard, http: httpx2.AsyncClient | None = None) -> None:
        self.dashboard = dashboard
        self.services = dashboard.services
        self.identity = dashboard.services.identity
        self._http = http
        self.discovery = Discovery(self._fetch)
        self.jwks = JwksCache(self._fetch)

    @property
    def http(self) -> httpx2.AsyncClient:
        if self._http is None:
            self._http = httpx2.AsyncClient(timeout=10.0, follow_redirects=False)
        return self._http

    @http.setter
    def http(self, client: httpx2.AsyncClient) -> None:
        """Swap the outbound HTTP client (all calls to identity providers go through it)."""
        self._http = client

    async def _fetch(self, url: str) -> dict[str, Any]:
        response = await self.http.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > MAX_DOCUMENT:
            raise ValueError("document too large")
        document = response.json()
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return document

    async def metadata(self, provider: dict[str, Any]) -> ProviderMetadata:
        return await self.discovery.get(provider["issuer"])

    # -- sign-in ----------------------------------------------------------------------------------

    async def start(self, request: Request, provider: str) -> Response:
        from certctl.web.routes import PAGE_HEADERS, safe_next

        target = safe_next(request.query_params.get("next"))
        try:
            row = await self.identity.provider(provider)
        except NotFound:
            row = None
        if row is None or not row["enabled"]:
            return await self.dashboard.error(
                request, None, 404, "Not found", "There is no such sign-in provider."
            )
        try:
            metadata = await self.metadata(row)
        except TokenRejected as exc:
            await self._refused(request, row, exc.reason)
            return await self._failure_page(
                request, 503, "The identity provider cannot be reached right now."
            )
        if (
            metadata.code_challenge_methods_supported
            and "S256" not in metadata.code_challenge_methods_supported
        ):
            await self._refused(request, row, "pkce_s256_unsupported")
            return await self._failure_page(
                request, 503, "The identity provider does not support PKCE (S256)."
            )
        browser, state = sessions.new_token(), sessions.new_token()
        now = self.services.context.clock.now()
        async with unit_of_work(self.services.context.engine) as uow:
            await uow.connection.execute(delete(LOGIN_STATES).where(LOGIN_STATES.c.expires_at <= now))
            await uow.connection.execute(
                LOGIN_STATES.insert().values(
                    state_sha256=sessions.sha256_hex(state),
                    browser_sha256=sessions.sha256_hex(browser),
                    provider_id=row["id"],
                    next_path=target,
                    created_at=now,
                    expires_at=now + LOGIN_WINDOW,
                )
            )
        query = {
            "response_type": "code",
            "client_id": row["client_id"],
            "redirect_uri": self.redirect_uri(request),
            "scope": " ".join(row["scopes"]),
            "state": state,
            "nonce": derive(browser, "nonce", state),
            "code_challenge": s256(derive(browser, "pkce", state)),
            "code_challenge_method": "S256",
        }
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        response = RedirectResponse(
            metadata.authorization_endpoint + separator + urlencode(query),
            status_code=303,
            headers=PAGE_HEADERS,
        )
        sessions.set_cookie(
            response, PRELOGIN_COOKIE, browser, lifetime=LOGIN_WINDOW, http_only=True, same_site="Lax"
        )
        return response

    @staticmethod
    def redirect_uri(request: Request) -> str:
        return str(request.base_url).rstrip("/") + CALLBACK_PATH

    async def callback(self, request: Request) -> Response:
        params = request.query_params
        browser = request.cookies.get(PRELOGIN_COOKIE, "")
        state = params.get("state", "")
        if not browser or not state or len(state) > 200 or len(browser) > 200:
            await self._refused(request, None, "missing_state_or_prelogin_cookie")
            return await self._failure_page(
                request,
                400,
                "This sign-in was not started in this browser, or it expired. Please start again.",
            )
        now = self.services.context.clock.now()
        hashed = sessions.sha256_hex(state)
        async with unit_of_work(self.services.context.engine) as uow:
            found = (
                (
                    await uow.connection.execute(
                        select(LOGIN_STATES).where(LOGIN_STATES.c.state_sha256 == hashed)
                    )
                )
                .mappings()
                .first()
            )
            consumed = (
                await uow.connection.execute(
                    delete(LOGIN_STATES).where(LOGIN_STATES.c.state_sha256 == hashed)
                )
            ).rowcount
        if found is None or consumed != 1:
            await self._refused(request, None, "state_unknown_or_reused")
            return await self._failure_page(request, 400, "This sign-in link was already used or is unknown.")
        if not sessions.token_matches(browser, found["browser_sha256"]):
            await self._refused(request, None, "state_from_another_browser")
            return await self._failure_page(request, 400, "This sign-in was started in another browser.")
        if found["expires_at"] <= now:
            await self._refused(request, None, "state_expired")
            return await self._failure_page(request, 400, "This sign-in took too long. Please start again.")
        try:
            provider = await self.identity.provider(found["provider_id"])
        except NotFound:
            provider = None
        if provider is None or not provider["enabled"]:
            await self._refused(request, None, "provider_disabled")
            return await self._failure_page(request, 403, "This sign-in provider is not enabled.")
        try:
            outcome = await self._complete(request, provider, browser=browser, state=state)
        except TokenRejected as exc:
            await self._refused(request, provider, exc.reason)
            return await self._failure_page(request, 401, "The identity provider's answer was not accepted.")
        if isinstance(outcome, Response):
            return outcome
        return await self._open_session(request, provider, outcome, target=found["next_path"])

    async def _complete(
        self, request: Request, provider: dict[str, Any], *, browser: str, state: str
    ) -> SignedInUser | Response:
        params = request.query_params
        metadata = await self.metadata(provider)
        issuer_param = params.get("iss")
        if metadata.authorization_response_iss_parameter_supported and issuer_param is None:
            raise TokenRejected("iss_parameter_missing", "The authorization response carries no iss.")
        if issuer_param is not None and issuer_param != metadata.issuer:
            raise TokenRejected("iss_parameter_mismatch", "The authorization response names another issuer.")
        if params.get("error"):
            error = params.get("error", "")[:60]
            await self._refused(request, provider, "provider_error", {"error": error})
            return await self._failure_page(request, 401, "The identity provider did not sign you in.")
        code = params.get("code", "")
        if not code or len(code) > 2048:
            raise TokenRejected("code_missing", "The authorization response carries no code.")
        tokens = await self._redeem(provider, metadata, code, derive(browser, "pkce", state), request)
        id_token, access_token = tokens.get("id_token"), tokens.get("access_token")
        if not isinstance(id_token, str) or not id_token:
            raise TokenRejected("id_token_missing", "The token endpoint returned no ID token.")
        if access_token is not None and not isinstance(access_token, str):
            raise TokenRejected("malformed", "The token endpoint's access token is not a string.")
        claims = await validate_id_token(
            id_token,
            metadata=metadata,
            jwks=self.jwks,
            client_id=provider["client_id"],
            nonce=derive(browser, "nonce", state),
            access_token=access_token,
            now=self.services.context.clock.now(),
        )
        try:
            groups = extract_groups(claims, provider["groups_claim"], provider["groups_format"])
            if groups is None and access_token and metadata.userinfo_endpoint:
                extra = await self._userinfo(metadata.userinfo_endpoint, access_token)
                if extra.get("sub") != claims["sub"]:
                    raise TokenRejected(
                        "userinfo_sub_mismatch", "The userinfo subject differs from the token."
                    )
                claims = extra | claims
                groups = extract_groups(extra, provider["groups_claim"], provider["groups_format"])
        except ValidationFailed:
            raise TokenRejected("groups_claim_malformed", "The groups claim has the wrong shape.") from None
        email = _text(claims, "email")
        if not email_allowed(provider, email, claims.get("email_verified")):
            await self._refused(request, provider, "email_domain_not_allowed")
            return await self._failure_page(
                request, 403, "Your e-mail domain is not allowed to sign in here."
            )
        name = _text(claims, "name")
        sid = _text(claims, "sid") or None
        return SignedInUser(
            provider=provider,
            subject=claims["sub"][:255],
            email=email[:320],
            name=name[:200],
            groups=groups or [],
            sid=sid[:255] if sid else None,
        )

    async def _redeem(
        self, provider: dict[str, Any], metadata: ProviderMetadata, code: str, verifier: str, request: Request
    ) -> dict[str, Any]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri(request),
            "code_verifier": verifier,
        }
        secret = self.identity.client_secret(provider)
        headers = {"Accept": "application/json"}
        if secret is not None:  # client_secret_basic (RFC 6749 §2.3.1): both parts form-encoded first
            pair = f"{quote(provider['client_id'], safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form["client_id"] = provider["client_id"]
        try:
            response = await self.http.post(metadata.token_endpoint, data=form, headers=headers)
        except httpx2.HTTPError:
            raise TokenRejected(
                "token_endpoint_unreachable", "The token endpoint cannot be reached."
            ) from None
        if response.status_code != 200 or len(response.content) > MAX_DOCUMENT:
            raise TokenRejected("token_endpoint_error", "The token endpoint refused the code.")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TokenRejected(
                "token_endpoint_error", "The token endpoint answered something other than JSON."
            )
        return body

    async def _userinfo(self, endpoint: str, access_token: str) -> dict[str, Any]:
        try:
            response = await self.http.get(
                endpoint, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
            )
            response.raise_for_status()
            body = response.json()
        except (httpx2.HTTPError, ValueError):
            raise TokenRejected("userinfo_unavailable", "The userinfo endpoint cannot be read.") from None
        if not isinstance(body, dict):
            raise TokenRejected("userinfo_unavailable", "The userinfo answer is not a JSON object.")
        return body

    async def _open_session(
        self, request: Request, provider: dict[str, Any], signed: SignedInUser, *, target: str
    ) -> Response:
        from certctl.web.routes import client_meta, request_info

        store = self.dashboard.store
        now = self.services.context.clock.now()
        async with unit_of_work(self.services.context.engine) as uow:
            connection = uow.connection
            user = await self.identity.record_sign_in(connection, signed)
            first_admin = await self.identity.claim_first_admin(connection, user, signed)
            access = await load_user_access(
                connection, user_id=user["id"], provider_id=provider["id"], groups=signed.groups, now=now
            )
            name = signed.email or signed.name or signed.subject
            actor = Actor(id=user["id"], name=name, type="user", access=access)
            if first_admin is not None:
                await audit.append(
                    connection,
                    [
                        audit_record(
                            actor=actor,
                            action="auth.oidc.first_admin",
                            resource_type="user",
                            resource_id=user["id"],
                            at=now,
                            request=request_info(request),
                            details={"provider": provider["name"], "group": first_admin},
                        )
                    ],
                )
            if not access.permissions:
                await audit.append(
                    connection,
                    [
                        audit_record(
                            actor=actor,
                            action="auth.oidc.unmapped",
                            resource_type="user",
                            resource_id=user["id"],
                            at=now,
                            request=request_info(request),
                            details={"provider": provider["name"], "groups": signed.groups[:50]},
                            outcome="denied",
                        )
                    ],
                )
                created = None
            else:
                created = await store.open(
                    sessions.SessionPrincipal(
                        type="user",
                        id=user["id"],
                        name=name,
                        access=access,
                        provider_id=provider["id"],
                        idp_sid=signed.sid,
                        idp_sub=signed.subject,
                    ),
                    request=request_info(request),
                    client=client_meta(request),
                    replacing=request.cookies.get(sessions.SESSION_COOKIE),
                    action="auth.oidc.login",
                    details={"provider": provider["name"], "groups": signed.groups[:50]},
                    connection=connection,
                )
        if created is None:
            message = (
                f"You signed in as {name}, but none of your groups has a role in certctl. "
                "Ask an administrator to map one of your groups to a role."
            )
            response = await self._failure_page(request, 403, message, title="No role")
            return response
        response = await self.dashboard.render(request, "oidc_done.html", title="Signed in", next=target)
        response.headers["Refresh"] = f"0; url={target}"
        self.dashboard.set_session_cookies(response, created)
        sessions.clear_cookie(response, PRELOGIN_COOKIE, http_only=True)
        return response

    async def _failure_page(
        self, request: Request, status: int, message: str, *, title: str = "Sign-in failed"
    ) -> Response:
        response = await self.dashboard.error(request, None, status, title, message)
        sessions.clear_cookie(response, PRELOGIN_COOKIE, http_only=True)
        return response

    async def _refused(
        self,
        request: Request,
        provider: dict[str, Any] | None,
        reason: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        from certctl.web.routes import request_info

        extra = {"provider": provider["name"]} if provider else {}
        await self.dashboard.store.audit_failure(
            request_info(request),
            reason=reason,
            action="auth.oidc.login_failed",
            details=extra | (details or {}),
        )

    # -- logout -----------------------------------------------------------------------------------

    async def end_session_url(self, request: Request, provider_id: str | None) -> str | None:
        """Where to send the browser after signing out of a federated session (RP-initiated logout)."""
        if not provider_id:
            return None
        try:
            provider = await self.identity.provider(provider_id)
            metadata = await self.metadata(provider)
        except (NotFound, TokenRejected):
            return None
        if not metadata.end_session_endpoint:
            return None
        query = {
            "client_id": provider["client_id"],
            "post_logout_redirect_uri": str(request.base_url).rstrip("/") + "/login",
        }
        separator = "&" if "?" in metadata.end_session_endpoint else "?"
        return metadata.end_session_endpoint + separator + urlencode(query)

    async def back_channel_logout(self, request: Request) -> Response:
        from certctl.web.routes import read_form, request_info

        form = await read_form(request)
        token = form.get("logout_token", "")
        claims = unverified_claims(token) if token else {}
        issuer, audience = claims.get("iss"), claims.get("aud")
        audiences = (
            [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
        )
        candidates = [
            p
            for p in await self.identity.providers()
            if p["issuer"] == issuer and p["client_id"] in audiences
        ]
        if not token or not candidates:
            return await self._logout_refused(
                request, None, "unknown_issuer_or_audience" if token else "malformed"
            )
        provider = candidates[0]
        now = self.services.context.clock.now()
        try:
            metadata = await self.metadata(provider)
            logout = await validate_logout_token(
                token, metadata=metadata, jwks=self.jwks, client_id=provider["client_id"], now=now
            )
        except TokenRejected as exc:
            return await self._logout_refused(request, provider, exc.reason)
        try:
            async with unit_of_work(self.services.context.engine) as uow:
                connection = uow.connection
                await connection.execute(delete(LOGOUT_JTIS).where(LOGOUT_JTIS.c.expires_at <= now))
                await connection.execute(
                    LOGOUT_JTIS.insert().values(
                        provider_id=provider["id"], jti=logout.jti[:255], expires_at=now + LOGOUT_JTI_KEEP
                    )
                )
                ended = await web_sessions.end_sessions(
                    connection, provider_id=provider["id"], idp_sid=logout.sid, idp_sub=logout.sub
                )
                await audit.append(
                    connection,
                    [
                        audit_record(
                            actor=Actor(
                                id=provider["id"], name=f"oidc:{provider['name']}", type="oidc_provider"
                            ),
                            action="auth.oidc.backchannel_logout",
                            resource_type="web_session",
                            resource_id=",".join(ended)[:200],
                            at=now,
                            request=request_info(request),
                            details={"provider": provider["name"], "sessions_ended": len(ended)},
                        )
                    ],
                )
        except IntegrityError:
            return await self._logout_refused(request, provider, "replayed_jti")
        return Response(status_code=200, headers=NO_STORE)

    async def _logout_refused(
        self, request: Request, provider: dict[str, Any] | None, reason: str
    ) -> Response:
        from certctl.web.routes import request_info

        details = {"provider": provider["name"]} if provider else {}
        await self.dashboard.store.audit_failure(
            request_info(request), reason=reason, action="auth.oidc.logout_rejected", details=details
        )
        body = {"error": "invalid_request", "error_description": f"logout token refused: {reason}"}
        return JSONResponse(body, status_code=400, headers=NO_STORE)


def install(app: Any, dashboard: Dashboard) -> OidcLogin:
    login = OidcLogin(dashboard)
    app.add_api_route("/auth/oidc/{provider}/start", login.start, methods=["GET"], include_in_schema=False)
    app.add_api_route(CALLBACK_PATH, login.callback, methods=["GET"], include_in_schema=False)
    app.add_api_route(BACKCHANNEL_PATH, login.back_channel_logout, methods=["POST"], include_in_schema=False)
    return login
