"""Dashboard sessions: server-side rows behind a signed ``__Host-`` cookie.

Why this shape:

* The cookie carries a random session id, the id of the signing key and an HMAC-SHA256 over the
  length-prefixed fields (so no two ways of splitting the fields give the same MAC). The row's primary
  key is the SHA-256 of the id, so a copy of the database yields no usable cookie, and a forged or
  truncated cookie is refused before any database read.
* Signing keys are sealed under the master key and rotate: the active key signs, a retired key still
  verifies until the absolute session lifetime has passed after its retirement, then it is deleted.
  Start-up fails when no signing key exists (``ensure_signing_key`` makes the first one).
* A session belongs to an API key (dashboard sign-in with a key), an OIDC user, or the break-glass
  account. Access is resolved again on every request: revoking a key, a role change or a group mapping
  change applies at once. Sessions have an absolute lifetime and an idle timeout, and can be bound to
  the client's IP address and/or user agent.
* CSRF: each session has its own random token, stored as a SHA-256 only. The browser gets it in a
  readable cookie and a ``<meta>`` tag; every POST must send it back (form field or header) and it is
  compared in constant time (double-submit cookie checked against the hashed token on the row).
* Sign-in, failed sign-in, sign-out and revocation are audited; no cookie, key or token value is ever
  logged or stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from certctl.auth.api_keys import KeyAuthenticator
from certctl.auth.config import Binding, SessionConfig
from certctl.auth.principals import load_access, load_user_access
from certctl.auth.session_keys import SigningKeys, cookie_mac, length_prefixed, sign_cookie, split_cookie
from certctl.domain.clock import Clock
from certctl.domain.rbac import Access, global_access
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.container import Services
from certctl.store.db import autocommit_reads, unit_of_work
from certctl.store.models import User, table_of
from certctl.store.repositories import audit, rows, web_sessions

log = logging.getLogger("certctl.web")

SESSION_COOKIE = "__Host-certctl_session"
CSRF_COOKIE = "__Host-certctl_csrf"
LOGIN_COOKIE = "__Host-certctl_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOGIN_FORM_LIFETIME = timedelta(hours=1)
SESSION_ACTOR_TYPE = "web_session"
TOUCH_EVERY = timedelta(seconds=60)
ACCESS_CACHE_SECONDS = 2.0
SESSION_CACHE_SECONDS = 300.0
"""A resolved session is reused this long per process while the change log is followed (every
``SYNC_SECONDS``): a session ended or changed anywhere stops being reused within that second; one ended
by this process at once. Without a recent sync, reuse falls back to ``UNSYNCED_CACHE_SECONDS``."""
SYNC_SECONDS = 1.0
UNSYNCED_CACHE_SECONDS = 1.0
USERS = table_of(User)

PrincipalType = Literal["api_key", "user", "breakglass"]
RESOLVE = (
    select(
        rows.SESSIONS,
        rows.API_KEYS.c.name.label("key_name"),
        rows.API_KEYS.c.revoked_at.label("key_revoked"),
        rows.API_KEYS.c.expires_at.label("key_expires"),
        USERS.c.email.label("user_email"),
        USERS.c.name.label("user_name"),
        USERS.c.groups.label("user_groups"),
        USERS.c.provider_id.label("user_provider"),
    )
    .outerjoin(rows.API_KEYS, rows.API_KEYS.c.id == rows.SESSIONS.c.api_key_id)
    .outerjoin(USERS, USERS.c.id == rows.SESSIONS.c.user_id)
    .where(rows.SESSIONS.c.id == bindparam("hashed"))
)
"""One read per request: the session with its API key or user (built once, parameters bound per call)."""


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(presented: str | None, expected_sha256: str) -> bool:
    """Constant-time check of a presented token against a stored SHA-256 hex digest."""
    if not presented or not presented.isascii() or len(presented) > 200:
        return False
    return hmac.compare_digest(sha256_hex(presented), expected_sha256)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def cookie_header(name: str, value: str, *, max_age: int, http_only: bool, same_site: str = "Strict") -> str:
    """A ``__Host-`` cookie: Secure, Path=/, no Domain, SameSite, all spelled out explicitly."""
    parts = [f"{name}={value}", "Path=/", f"Max-Age={max_age}", "Secure", f"SameSite={same_site}"]
    if http_only:
        parts.append("HttpOnly")
    return "; ".join(parts)


def set_cookie(
    response: Response,
    name: str,
    value: str,
    *,
    lifetime: timedelta,
    http_only: bool,
    same_site: str = "Strict",
) -> None:
    seconds = max(0, int(lifetime.total_seconds()))
    header = cookie_header(name, value, max_age=seconds, http_only=http_only, same_site=same_site)
    response.headers.append("set-cookie", header)


def clear_cookie(response: Response, name: str, *, http_only: bool) -> None:
    response.headers.append("set-cookie", cookie_header(name, "", max_age=0, http_only=http_only))


def binding_digest(mode: Binding, *, client_ip: str, user_agent: str) -> str | None:
    if mode == "none":
        return None
    material = []
    if mode in ("ip", "ip+user-agent"):
        material.append(client_ip)
    if mode in ("user-agent", "ip+user-agent"):
        material.append(user_agent)
    return hashlib.sha256(b"".join(length_prefixed(m.encode()) for m in material)).hexdigest()


@dataclass(frozen=True)
class ClientMeta:
    """What the browser's request says about its client (for binding and for the session list)."""

    ip: str = ""
    user_agent: str = ""


@dataclass(frozen=True)
class SessionPrincipal:
    """Who a new session is for. ``access`` is only used for the audit row; requests re-resolve it."""

    type: PrincipalType
    id: str
    name: str
    access: Access = field(default_factory=Access)
    provider_id: str | None = None
    idp_sid: str | None = None
    idp_sub: str | None = None

    @property
    def actor_type(self) -> str:
        return {"api_key": SESSION_ACTOR_TYPE, "user": "user", "breakglass": "breakglass"}[self.type]


@dataclass(frozen=True)
class WebSession:
    """A live dashboard session, resolved from its cookie with its principal's current access."""

    id_sha256: str
    handle: str
    csrf_sha256: str
    principal_type: str
    principal_id: str
    key_name: str
    expires_at: datetime
    actor: Actor
    provider_id: str | None = None

    @property
    def key_id(self) -> str:
        return self.principal_id

    @property
    def who(self) -> str:
        """How pages name the principal: "the key 'ci'", "the user 'alice@example.com'"."""
        kind = {"api_key": "key", "user": "user", "breakglass": "break-glass account"}.get(
            self.principal_type, ""
        )
        return f"The {kind} '{self.key_name}'"

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

    def __init__(
        self,
        services: Services,
        config: SessionConfig | None = None,
        keys: SigningKeys | None = None,
        *,
        breakglass_enabled: bool = False,
    ) -> None:
        self.breakglass_enabled = breakglass_enabled
        self._engine = services.context.engine
        self._context = services.context
        self._authenticator: KeyAuthenticator = services.authenticator
        self.config = config or SessionConfig()
        self._access: dict[tuple[Any, ...], tuple[float, Access]] = {}
        self._sessions: dict[str, tuple[float, int, dict[str, Any], Access]] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self._synced_at = float("-inf")
        """Resolved sessions, reused for ``SESSION_CACHE_SECONDS`` unless this process ended or changed
        a session, a key or a grant meanwhile (the generation moved)."""
        self.keys = keys or SigningKeys(
            self._engine, services.context.master_key, self._clock, window=self.config.lifetime
        )

    @property
    def _clock(self) -> Clock:
        """The services' clock, read at each use (as every service does), so one clock rules sign-in,
        timeouts and audit times."""
        return self._context.clock

    async def sign_in(
        self,
        secret: str,
        *,
        request: RequestInfo,
        client: ClientMeta | None = None,
        replacing: str | None = None,
    ) -> NewSession | None:
        """Check an API key and open a session for it, or audit the failure and return None."""
        now = self._clock.now()
        # The form body holds the key: not even its digest goes into the trail.
        request = request.without_body()
        principal = await self._authenticator.authenticate(secret.strip(), now=now)
        if principal is None:
            await self.audit_failure(request, reason="unknown, expired or revoked key")
            return None
        return await self.open(
            SessionPrincipal(
                type="api_key", id=principal.key_id, name=principal.name, access=principal.access
            ),
            request=request,
            client=client,
            replacing=replacing,
            action="web.login",
        )

    async def open(
        self,
        principal: SessionPrincipal,
        *,
        request: RequestInfo,
        client: ClientMeta | None = None,
        replacing: str | None = None,
        action: str = "web.login",
        details: dict[str, Any] | None = None,
        connection: AsyncConnection | None = None,
    ) -> NewSession:
        """Open a session for an authenticated principal (API key, OIDC user, break-glass) and audit it.
        ``connection`` joins the caller's transaction (e.g. the one that wrote the user row)."""
        now = self._clock.now()
        client = client or ClientMeta()
        session_id, csrf_token = new_token(), new_token()
        key_id, secret = await self.keys.signing()
        token = sign_cookie(secret, session_id, key_id)
        actor = Actor(
            id=principal.id, name=principal.name, type=principal.actor_type, access=principal.access
        )
        session = WebSession(
            id_sha256=sha256_hex(session_id),
            handle=secrets.token_hex(8),
            csrf_sha256=sha256_hex(csrf_token),
            principal_type=principal.type,
            principal_id=principal.id,
            key_name=principal.name,
            expires_at=now + self.config.lifetime,
            actor=actor,
            provider_id=principal.provider_id,
        )
        record = {
            "id": session.id_sha256,
            "handle": session.handle,
            "principal_type": principal.type,
            "principal_id": principal.id,
            "api_key_id": principal.id if principal.type == "api_key" else None,
            "user_id": principal.id if principal.type == "user" else None,
            "provider_id": principal.provider_id,
            "idp_sid": principal.idp_sid,
            "idp_sub": principal.idp_sub,
            "csrf_sha256": session.csrf_sha256,
            "bind_sha256": binding_digest(
                self.config.binding, client_ip=client.ip, user_agent=client.user_agent
            ),
            "client_ip": client.ip[:64],
            "user_agent": client.user_agent[:200],
            "created_at": now,
            "last_seen_at": now,
            "expires_at": session.expires_at,
        }
        audit_row = audit_record(
            actor=actor,
            action=action,
            resource_type="web_session",
            resource_id=session.handle,
            at=now,
            request=request,
            details={"principal_type": principal.type, "expires_at": session.expires_at.isoformat()}
            | (details or {}),
        )

        async def write(conn: AsyncConnection) -> None:
            await purge_expired(conn, now)
            if replacing and (parts := split_cookie(replacing)) is not None:
                await rows.remove(conn, rows.SESSIONS, sha256_hex(parts[0]))
                await web_sessions.log_changes(conn, [sha256_hex(parts[0])])
            await conn.execute(rows.SESSIONS.insert().values(**record))
            await audit.append(conn, [audit_row])

        if connection is not None:
            await write(connection)
        else:
            async with unit_of_work(self._engine) as uow:
                await write(uow.connection)
        return NewSession(session=session, token=token, csrf_token=csrf_token)

    async def resolve(self, token: str | None, client: ClientMeta | None = None) -> WebSession | None:
        """The live session for a cookie: well signed, known, within both timeouts, bound to this client
        (when binding is on), and its principal still valid."""
        parts = split_cookie(token)
        if parts is None:
            return None
        session_id, key_id, mac = parts
        secret = await self.keys.verifying(key_id)
        if secret is None or not hmac.compare_digest(cookie_mac(secret, session_id, key_id), mac):
            return None
        now = self._clock.now()
        hashed = sha256_hex(session_id)
        generation = web_sessions.generation() + self._authenticator.generation
        cached = self._sessions.get(hashed)
        alive = False
        if (
            cached is not None
            and cached[1] == generation
            and time.monotonic() - cached[0] < self._cache_seconds()
        ):
            row, access = cached[2], cached[3]
            alive, name = self._alive(row, now, client)
            alive = alive and not _grant_lapsed(access, now)
            # A cached row that looks dead (idle, say) may be stale: another process may have used it since.
        if not alive:
            async with autocommit_reads(self._engine) as connection:  # one statement: no BEGIN/ROLLBACK
                found = (await connection.execute(RESOLVE, {"hashed": hashed})).mappings().first()
                if found is None:
                    self._sessions.pop(hashed, None)
                    return None
                row = dict(found)
                alive, name = self._alive(row, now, client)
                known = self._cached_access(row) if alive else Access()
                access = known if known is not None else await self._load_access(connection, row, now)
            if alive:
                if len(self._sessions) > 10_000:
                    self._sessions.clear()
                self._sessions[hashed] = (time.monotonic(), generation, row, access)
                self.start_sync()
        if not alive:
            self._sessions.pop(hashed, None)
            async with unit_of_work(self._engine) as uow:
                await rows.remove(uow.connection, rows.SESSIONS, hashed)
                await web_sessions.log_changes(uow.connection, [hashed])
            return None
        if now - row["last_seen_at"] >= TOUCH_EVERY:
            async with unit_of_work(self._engine) as uow:
                await uow.connection.execute(
                    update(rows.SESSIONS).where(rows.SESSIONS.c.id == hashed).values(last_seen_at=now)
                )
            row["last_seen_at"] = now
        actor_type = {"api_key": SESSION_ACTOR_TYPE}.get(row["principal_type"], row["principal_type"])
        actor = Actor(id=row["principal_id"], name=name, type=actor_type, access=access)
        return WebSession(
            id_sha256=hashed,
            handle=row["handle"],
            csrf_sha256=row["csrf_sha256"],
            principal_type=row["principal_type"],
            principal_id=row["principal_id"],
            key_name=name,
            expires_at=row["expires_at"],
            actor=actor,
            provider_id=row["provider_id"],
        )

    def _cache_seconds(self) -> float:
        synced = time.monotonic() - self._synced_at < 5 * SYNC_SECONDS
        return SESSION_CACHE_SECONDS if synced else UNSYNCED_CACHE_SECONDS

    def start_sync(self) -> None:
        """Follow the change log in the background (started with the first cached session)."""
        if self._sync_task is None or self._sync_task.done():
            self._sync_task = asyncio.get_running_loop().create_task(self._sync_loop())

    async def stop_sync(self) -> None:
        task, self._sync_task = self._sync_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _sync_loop(self) -> None:
        seen: int | None = None
        while True:
            try:
                async with unit_of_work(self._engine) as uow:
                    if seen is None:
                        seen = await web_sessions.latest_change(uow.connection)
                        self._sessions.clear()  # anything cached before the first read is unproven
                    else:
                        changes = await web_sessions.changes_since(uow.connection, seen)
                        if changes:
                            seen = changes[-1][0]
                            if any(session_id is None for _, session_id in changes):
                                self._sessions.clear()
                            for _, session_id in changes:
                                if session_id is not None:
                                    self._sessions.pop(session_id, None)
                    if random.random() < 0.01:  # noqa: S311 (housekeeping, not security)
                        await web_sessions.forget_old_changes(uow.connection, now=self._clock.now())
                self._synced_at = time.monotonic()
            except asyncio.CancelledError:
                raise
            except Exception:  # the cache falls back to short reuse until the log can be read again
                log.warning("could not read the session change log", exc_info=True)
            await asyncio.sleep(SYNC_SECONDS)

    @staticmethod
    def _access_key(row: Any) -> tuple[Any, ...]:
        # Per session: the sign-in that follows a role or mapping change (which ended the old session)
        # must resolve afresh, not reuse what the principal's previous session was allowed.
        return (
            row["id"],
            row["principal_type"],
            row["principal_id"],
            row["user_provider"],
            tuple(row["user_groups"] or ()),
        )

    def _cached_access(self, row: Any) -> Access | None:
        """A principal's access, as resolved within the last ``ACCESS_CACHE_SECONDS`` in this process.
        Role and mapping changes also end the sessions concerned, so the short reuse never outlives them."""
        cached = self._access.get(self._access_key(row))
        if cached is not None and time.monotonic() - cached[0] < ACCESS_CACHE_SECONDS:
            return cached[1]
        return None

    async def _load_access(self, connection: AsyncConnection, row: Any, now: datetime) -> Access:
        if row["principal_type"] == "api_key":
            access = await load_access(
                connection, principal_type="api_key", principal_id=row["principal_id"], now=now
            )
        elif row["principal_type"] == "user":
            access = await load_user_access(
                connection,
                user_id=row["principal_id"],
                provider_id=row["user_provider"],
                groups=row["user_groups"] or [],
                now=now,
            )
        else:
            access = global_access(["admin"])
        if len(self._access) > 10_000:
            self._access.clear()
        self._access[self._access_key(row)] = (time.monotonic(), access)
        return access

    def _alive(self, row: Any, now: datetime, client: ClientMeta | None) -> tuple[bool, str]:
        if row["expires_at"] <= now or row["last_seen_at"] + self.config.idle <= now:
            return False, ""
        if row["bind_sha256"] is not None:
            client = client or ClientMeta()
            expected = binding_digest(self.config.binding, client_ip=client.ip, user_agent=client.user_agent)
            if expected is None or not hmac.compare_digest(expected, row["bind_sha256"]):
                return False, ""
        kind = row["principal_type"]
        if kind == "api_key":
            if row["key_name"] is None or row["key_revoked"] is not None:
                return False, ""
            if row["key_expires"] is not None and row["key_expires"] <= now:
                return False, ""
            return True, str(row["key_name"])
        if kind == "user":
            if row["user_email"] is None and row["user_name"] is None:
                return False, ""
            return True, str(row["user_email"] or row["user_name"] or row["principal_id"])
        if kind == "breakglass":  # switching break-glass off ends its sessions too
            return self.breakglass_enabled, str(row["principal_id"])
        return False, ""

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
            await web_sessions.log_changes(uow.connection, [session.id_sha256])
        return replace(session, csrf_sha256=digest), token

    async def sign_out(self, session: WebSession, *, request: RequestInfo) -> None:
        now = self._clock.now()
        async with unit_of_work(self._engine) as uow:
            await rows.remove(uow.connection, rows.SESSIONS, session.id_sha256)
            await web_sessions.log_changes(uow.connection, [session.id_sha256])
            await audit.append(
                uow.connection,
                [
                    audit_record(
                        actor=session.actor,
                        action="web.logout",
                        resource_type="web_session",
                        resource_id=session.handle,
                        at=now,
                        request=request,
                    )
                ],
            )

    async def audit_failure(
        self,
        request: RequestInfo,
        *,
        reason: str,
        action: str = "web.login_failed",
        actor: Actor | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        record = audit_record(
            actor=actor or Actor(id="anonymous", name="anonymous", type="unknown"),
            action=action,
            resource_type="web_session",
            resource_id="",
            at=self._clock.now(),
            request=request,
            details={"reason": reason} | (details or {}),
            outcome="failure",
        )
        try:
            async with unit_of_work(self._engine) as uow:
                await audit.append(uow.connection, [record])
        except Exception:  # the refusal is still shown even if the trail cannot be written
            log.exception("could not write the audit row for a failed dashboard sign-in")


def _grant_lapsed(access: Access, now: datetime) -> bool:
    """A time-bound grant in a cached access has expired since it was read: read again."""
    return any(g.expires_at is not None and g.expires_at <= now for g in access.grants)


async def purge_expired(connection: AsyncConnection, now: datetime) -> None:
    """Expired rows are dead weight: drop them whenever someone signs in."""
    await connection.execute(delete(rows.SESSIONS).where(rows.SESSIONS.c.expires_at <= now))
