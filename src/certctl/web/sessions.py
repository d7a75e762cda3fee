"""Dashboard sessions: an API key is exchanged once for a server-side session held in a ``__Host-`` cookie.

Why this shape:

* The browser never keeps the API key. Sign-in checks it once and creates a ``web_sessions`` row whose
  id is the SHA-256 of the random cookie value, so a copy of the database yields no usable cookie.
* Sessions end after eight hours, absolutely (no sliding renewal), and every request re-reads the linked
  API key: revoking or expiring the key ends its sessions at once, and role changes apply immediately.
* CSRF: each session has its own random token, stored as a SHA-256 only. The browser gets it in a
  readable cookie and a ``<meta>`` tag; every POST must send it back (form field or header) and it is
  compared in constant time. The sign-in form, which has no session yet, uses a double-submit cookie.
* Sign-in, failed sign-in and sign-out are audited; the presented key is never logged or stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from certctl.auth.api_keys import KeyAuthenticator
from certctl.auth.principals import load_access
from certctl.domain.clock import Clock
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.container import Services
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, rows

log = logging.getLogger("certctl.web")

SESSION_COOKIE = "__Host-certctl_session"
CSRF_COOKIE = "__Host-certctl_csrf"
LOGIN_COOKIE = "__Host-certctl_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SESSION_LIFETIME = timedelta(hours=8)
LOGIN_FORM_LIFETIME = timedelta(hours=1)
SESSION_ACTOR_TYPE = "web_session"


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(presented: str | None, expected_sha256: str) -> bool:
    """Constant-time check of a presented token against a stored SHA-256 hex digest."""
    if not presented or not presented.isascii() or len(presented) > 200:
        return False
    return hmac.compare_digest(sha256_hex(presented), expected_sha256)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def cookie_header(name: str, value: str, *, max_age: int, http_only: bool) -> str:
    """A ``__Host-`` cookie: Secure, Path=/, no Domain, SameSite=Strict, all spelled out explicitly."""
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "Secure", "SameSite=Strict"]
    if http_only:
        parts.append("HttpOnly")
    return "; ".join(parts)


def set_cookie(response: Response, name: str, value: str, *, lifetime: timedelta, http_only: bool) -> None:
    header = cookie_header(name, value, max_age=int(lifetime.total_seconds()), http_only=http_only)
    response.headers.append("set-cookie", header)


def clear_cookie(response: Response, name: str, *, http_only: bool) -> None:
    response.headers.append("set-cookie", cookie_header(name, "", max_age=0, http_only=http_only))


@dataclass(frozen=True)
class WebSession:
    """A live dashboard session, resolved from its cookie and re-checked against its API key."""

    id_sha256: str
    csrf_sha256: str
    key_id: str
    key_name: str
    expires_at: datetime
    actor: Actor

    def can(self, permission: str) -> bool:
        return permission in self.actor.permissions


@dataclass(frozen=True)
class NewSession:
    """What sign-in hands back once: the cookie values (only their digests are stored)."""

    session: WebSession
    token: str
    csrf_token: str


class SessionStore:
    """Create, resolve and end dashboard sessions; audit sign-in and sign-out."""

    def __init__(self, services: Services) -> None:
        self._engine = services.context.engine
        self._clock: Clock = services.context.clock
        self._authenticator: KeyAuthenticator = services.authenticator

    async def sign_in(
        self, secret: str, *, request: RequestInfo, replacing: str | None = None
    ) -> NewSession | None:
        """Check the key and open a session, or audit the failure and return None."""
        now = self._clock.now()
        # The form body holds the key: not even its digest goes into the trail.
        request = RequestInfo(request_id=request.request_id, started=request.started)
        principal = await self._authenticator.authenticate(secret.strip(), now=now)
        if principal is None:
            await self._audit_failure(request, now)
            return None
        token, csrf_token = new_token(), new_token()
        actor = Actor(
            id=principal.key_id, name=principal.name, type=SESSION_ACTOR_TYPE, access=principal.access
        )
        session = WebSession(
            id_sha256=sha256_hex(token),
            csrf_sha256=sha256_hex(csrf_token),
            key_id=principal.key_id,
            key_name=principal.name,
            expires_at=now + SESSION_LIFETIME,
            actor=actor,
        )
        async with unit_of_work(self._engine) as uow:
            await _purge_expired(uow.connection, now)
            if replacing:
                await rows.remove(uow.connection, rows.SESSIONS, sha256_hex(replacing))
            await rows.add(
                uow.connection,
                rows.SESSIONS,
                {
                    "id": session.id_sha256,
                    "api_key_id": principal.key_id,
                    "csrf_sha256": session.csrf_sha256,
                    "created_at": now,
                    "expires_at": session.expires_at,
                },
            )
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=actor,
                        action="web.login",
                        resource_type="api_key",
                        resource_id=principal.key_id,
                        at=now,
                        request=request,
                        details={"expires_at": session.expires_at.isoformat()},
                    )
                ],
            )
        return NewSession(session=session, token=token, csrf_token=csrf_token)

    async def resolve(self, token: str | None) -> WebSession | None:
        """The live session for a cookie: known, unexpired, its API key neither revoked nor expired."""
        if not token or not token.isascii() or len(token) > 200:
            return None
        now = self._clock.now()
        hashed = sha256_hex(token)
        keys = rows.API_KEYS
        statement = (
            select(
                rows.SESSIONS,
                keys.c.name,
                keys.c.revoked_at,
                keys.c.expires_at.label("key_expires"),
            )
            .join(keys, keys.c.id == rows.SESSIONS.c.api_key_id)
            .where(rows.SESSIONS.c.id == hashed)
        )
        async with read_only(self._engine) as connection:
            row = (await connection.execute(statement)).mappings().first()
            if row is None or not hmac.compare_digest(row["id"], hashed):
                return None
            access = await load_access(
                connection, principal_type="api_key", principal_id=row["api_key_id"], now=now
            )
        key_dead = row["revoked_at"] is not None or (
            row["key_expires"] is not None and row["key_expires"] <= now
        )
        if row["expires_at"] <= now or key_dead:
            async with unit_of_work(self._engine) as uow:
                await rows.remove(uow.connection, rows.SESSIONS, hashed)
            return None
        actor = Actor(id=row["api_key_id"], name=row["name"], type=SESSION_ACTOR_TYPE, access=access)
        return WebSession(
            id_sha256=hashed,
            csrf_sha256=row["csrf_sha256"],
            key_id=row["api_key_id"],
            key_name=row["name"],
            expires_at=row["expires_at"],
            actor=actor,
        )

    async def rotate_csrf(self, session: WebSession) -> tuple[WebSession, str]:
        """A fresh CSRF token for a session whose browser lost the readable cookie."""
        token = new_token()
        digest = sha256_hex(token)
        async with unit_of_work(self._engine) as uow:
            await uow.connection.execute(
                update(rows.SESSIONS)
                .where(rows.SESSIONS.c.id == session.id_sha256)
                .values(csrf_sha256=digest)
            )
        return replace(session, csrf_sha256=digest), token

    async def sign_out(self, session: WebSession, *, request: RequestInfo) -> None:
        now = self._clock.now()
        async with unit_of_work(self._engine) as uow:
            await rows.remove(uow.connection, rows.SESSIONS, session.id_sha256)
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=session.actor,
                        action="web.logout",
                        resource_type="api_key",
                        resource_id=session.key_id,
                        at=now,
                        request=request,
                    )
                ],
            )

    async def _audit_failure(self, request: RequestInfo, now: datetime) -> None:
        record = audit_record(
            actor=Actor(id="anonymous", name="anonymous", type="unknown"),
            action="web.login_failed",
            resource_type="web_session",
            resource_id="",
            at=now,
            request=request,
            details={"reason": "unknown, expired or revoked key"},
            outcome="failure",
        )
        try:
            async with unit_of_work(self._engine) as uow:
                await audit.append(uow.connection, [record])
        except Exception:  # the refusal is still shown even if the trail cannot be written
            log.exception("could not write the audit row for a failed dashboard sign-in")


async def _purge_expired(connection: AsyncConnection, now: datetime) -> None:
    """Expired rows are dead weight: drop them whenever someone signs in."""
    await connection.execute(delete(rows.SESSIONS).where(rows.SESSIONS.c.expires_at <= now))
