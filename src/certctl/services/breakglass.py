"""The break-glass admin: one sealed local account for when the identity provider is unreachable.

Why this shape:

* The password is hashed with Argon2id (OWASP parameters: 64 MiB, 3 passes, 1 lane); the hash never
  leaves this module's rows, and neither it nor the password reaches a log, an audit row or an answer.
* Every refused sign-in (unknown name, wrong password, locked account) costs the same: exactly one
  Argon2id verification, against the real hash or against a dummy hash made once with the same
  parameters, and the same statements against the database. Nothing in the answer's timing tells an
  attacker whether the name exists or whether the account is locked.
* Five failures in a row lock the account for fifteen minutes; the lock then lifts by itself (a success
  after that resets the counters). An administrator can also lift it at once.
* Verification runs in a worker thread (``asyncio.to_thread``): 64 MiB and ~100 ms of CPU per try must
  not stall the event loop.
* Each use is audited (``breakglass.login`` by the session store, ``breakglass.login_failed`` with the
  reason, ``breakglass.locked``), and the audit trail turns the sign-in and the lockout into
  ``breakglass.used`` notifications.
* :class:`AttemptLimiter` bounds the sign-in route to five tries a minute per client address. It lives in
  memory, so the limit holds per server process.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.errors import NotFound, ValidationFailed
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import audit, web_sessions
from certctl.store.repositories import breakglass as accounts

T = TypeVar("T")

PRINCIPAL_TYPE = "breakglass"
USERNAME_PATTERN = re.compile(r"[a-zA-Z0-9._-]{1,100}")
MIN_PASSWORD, MAX_PASSWORD = 16, 1024
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
ARGON2_MEMORY_KIB = 65_536
ARGON2_TIME_COST = 3
ARGON2_PARALLELISM = 1

FailureReason = Literal["unknown_user", "wrong_password", "locked"]
ANONYMOUS = Actor(id="anonymous", name="anonymous", type="unknown")


def password_hasher() -> PasswordHasher:
    """Argon2id with the OWASP minimum for Argon2id (m = 64 MiB, t = 3, p = 1), 16-byte salt."""
    return PasswordHasher(
        time_cost=ARGON2_TIME_COST,
        memory_cost=ARGON2_MEMORY_KIB,
        parallelism=ARGON2_PARALLELISM,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )


def verify_password(hasher: PasswordHasher, stored_hash: str, password: str) -> bool:
    """One Argon2id verification; any mismatch or unreadable hash is simply ``False``."""
    try:
        return hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_credential(username: str, password: str) -> None:
    if not USERNAME_PATTERN.fullmatch(username):
        raise ValidationFailed("the username must be 1 to 100 characters of letters, digits, '.', '_' or '-'")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ValidationFailed(
            f"the password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long "
            "(use a long random passphrase and keep it sealed)"
        )


def without_body_digest(request: RequestInfo | None) -> RequestInfo:
    """The request's id and timing, but not the SHA-256 of a body that holds a password."""
    return (request or RequestInfo()).without_body()


def public_view(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What the API shows: never the hash."""
    locked_until = row["locked_until"]
    return {
        "configured": True,
        "username": row["username"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "failed_attempts": row["failed_attempts"],
        "locked": locked_until is not None and locked_until > now,
        "locked_until": locked_until,
        "last_used_at": row["last_used_at"],
    }


@dataclass(frozen=True)
class Refusal:
    """A refused sign-in as the caller shows it: the audited reason (never shown to the visitor)."""

    reason: FailureReason


class BreakGlassService:
    def __init__(self, context: ServiceContext, hasher: PasswordHasher | None = None) -> None:
        self._ctx = context
        self._hasher = hasher or password_hasher()
        self._dummy_hash: str | None = None
        self._dummy_lock = asyncio.Lock()
        self.limiter = AttemptLimiter(lambda: self._ctx.clock.now())
        """The sign-in route's budget: five attempts a minute per client address, in this process."""

    async def dummy_hash(self) -> str:
        """A hash of a random password with the same parameters, made once per process; unknown names
        are verified against it so that they cost what a wrong password costs."""
        if self._dummy_hash is None:
            async with self._dummy_lock:
                if self._dummy_hash is None:
                    throwaway = secrets.token_urlsafe(32)
                    self._dummy_hash = await asyncio.to_thread(self._hasher.hash, throwaway)
        return self._dummy_hash

    async def set_credential(
        self, *, username: str, password: str, actor: Actor, request: RequestInfo | None = None
    ) -> dict[str, Any]:
        """Create or replace the one account (the name may change); ends every break-glass session."""
        check_credential(username, password)
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            existing = await accounts.current(connection)
            names = {username} | ({existing["username"]} if existing else set())
            ended = await web_sessions.end_sessions(
                connection, principals=[(PRINCIPAL_TYPE, name) for name in sorted(names)]
            )
            fresh = {
                "username": username,
                "password_hash": password_hash,
                "failed_attempts": 0,
                "locked_until": None,
                "updated_at": now,
            }
            if existing is None:
                account_id = f"bga_{secrets.token_hex(10)}"
                record = fresh | {"id": account_id, "created_at": now, "last_used_at": None}
                await accounts.add(connection, record)
            else:
                record = existing | fresh
                await accounts.save(connection, existing["id"], fresh)
            details: dict[str, Any] = {"username": username, "sessions_ended": len(ended)}
            if existing is not None and existing["username"] != username:
                details["previous_username"] = existing["username"]
            await audit.append(
                connection,
                [
                    audit_record(
                        actor=actor,
                        action="breakglass.credential_changed",
                        resource_type="breakglass_account",
                        resource_id=username,
                        at=now,
                        request=without_body_digest(request),
                        details=details,
                    )
                ],
            )
        return public_view(record, now)

    async def status(self) -> dict[str, Any]:
        now = self._ctx.clock.now()
        async with read_only(self._ctx.engine) as connection:
            row = await accounts.current(connection)
        return public_view(row, now) if row else {"configured": False}

    async def unlock(self, *, actor: Actor, request: RequestInfo | None = None) -> dict[str, Any]:
        """Lift a lockout now and reset the failure counter."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await self._existing(uow.connection)
            changes = {"failed_attempts": 0, "locked_until": None, "updated_at": now}
            await accounts.save(uow.connection, row["id"], changes)
            await self._audit(
                uow.connection,
                actor,
                "breakglass.unlocked",
                row["username"],
                now,
                request,
                {"username": row["username"], "failed_attempts": row["failed_attempts"]},
            )
        return public_view(row | changes, now)

    async def remove(self, *, actor: Actor, request: RequestInfo | None = None) -> None:
        """Delete the account and end its sessions."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await self._existing(uow.connection)
            ended = await web_sessions.end_sessions(
                uow.connection, principals=[(PRINCIPAL_TYPE, row["username"])]
            )
            await accounts.remove_all(uow.connection)
            details = {"username": row["username"], "sessions_ended": len(ended)}
            await self._audit(
                uow.connection, actor, "breakglass.removed", row["username"], now, request, details
            )

    async def authenticate(
        self,
        *,
        username: str,
        password: str,
        client_ip: str,
        request: RequestInfo | None = None,
        open_session: Callable[[AsyncConnection, str], Awaitable[T]],
    ) -> T | Refusal:
        """Check a sign-in; on success call ``open_session(connection, username)`` in the transaction
        that resets the counters (the session store writes the session and its ``breakglass.login``
        audit row there) and return what it returns. Otherwise audit the refusal and return it.

        Every refusal runs one Argon2id verification and the same statements (see the module doc)."""
        dummy = await self.dummy_hash()
        request = without_body_digest(request)
        async with read_only(self._ctx.engine) as connection:
            found = await accounts.by_username(connection, username[:101])
        stored_hash = found["password_hash"] if found else dummy
        matched = await asyncio.to_thread(verify_password, self._hasher, stored_hash, password)
        rehashed = None
        if matched and self._hasher.check_needs_rehash(stored_hash):  # parameters were raised since
            rehashed = await asyncio.to_thread(self._hasher.hash, password)
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            connection = uow.connection
            row = await accounts.claim(connection, found["id"] if found else accounts.NO_ACCOUNT)
            if row is None:
                reason: FailureReason = "unknown_user"
            elif row["locked_until"] is not None and row["locked_until"] > now:
                reason = "locked"
            elif matched and row["password_hash"] == stored_hash:
                changes: dict[str, Any] = {"failed_attempts": 0, "locked_until": None, "last_used_at": now}
                if rehashed is not None:
                    changes["password_hash"] = rehashed
                await accounts.save(connection, row["id"], changes)
                return await open_session(connection, row["username"])
            else:
                reason = "wrong_password"
            await self._refuse(connection, row, reason, username, client_ip, now, request)
        return Refusal(reason=reason)

    async def _refuse(
        self,
        connection: AsyncConnection,
        row: dict[str, Any] | None,
        reason: FailureReason,
        username: str,
        client_ip: str,
        now: datetime,
        request: RequestInfo,
    ) -> None:
        """Count a wrong password (restarting the count once an old lock has passed), lock the account at
        the fifth, and audit. Every reason writes the row once (an unknown name matches none)."""
        changes: dict[str, Any] = {"failed_attempts": 0, "locked_until": None}
        if row is not None:
            changes = {"failed_attempts": row["failed_attempts"], "locked_until": row["locked_until"]}
        if row is not None and reason == "wrong_password":
            lock_passed = row["locked_until"] is not None and row["locked_until"] <= now
            failures = 1 if lock_passed else row["failed_attempts"] + 1
            changes = {
                "failed_attempts": failures,
                "locked_until": None if lock_passed else row["locked_until"],
            }
            if failures >= MAX_FAILURES:
                changes["locked_until"] = now + LOCKOUT
        await accounts.save(connection, row["id"] if row else accounts.NO_ACCOUNT, changes)
        shown = username[:100]
        records = [
            audit_record(
                actor=ANONYMOUS,
                action="breakglass.login_failed",
                resource_type="breakglass_account",
                resource_id=shown if row is not None else "",
                at=now,
                request=request,
                details={"reason": reason, "username": shown, "client_ip": client_ip[:64]},
                outcome="failure",
            )
        ]
        if row is not None and reason == "wrong_password" and changes.get("locked_until") is not None:
            records.append(
                audit_record(
                    actor=ANONYMOUS,
                    action="breakglass.locked",
                    resource_type="breakglass_account",
                    resource_id=row["username"],
                    at=now,
                    request=request,
                    details={
                        "username": row["username"],
                        "failed_attempts": changes["failed_attempts"],
                        "locked_until": changes["locked_until"].isoformat(),
                        "client_ip": client_ip[:64],
                    },
                    outcome="failure",
                )
            )
        await audit.append(connection, records)

    async def audit_rate_limited(self, *, client_ip: str, retry_after: int, request: RequestInfo) -> None:
        """The sign-in route refused a client over its attempt budget (no password was checked)."""
        now = self._ctx.clock.now()
        record = audit_record(
            actor=ANONYMOUS,
            action="breakglass.login_failed",
            resource_type="breakglass_account",
            resource_id="",
            at=now,
            request=without_body_digest(request),
            details={"reason": "rate_limited", "client_ip": client_ip[:64], "retry_after": retry_after},
            outcome="failure",
        )
        async with unit_of_work(self._ctx.engine) as uow:
            await audit.append(uow.connection, [record])

    async def _existing(self, connection: AsyncConnection) -> dict[str, Any]:
        row = await accounts.current(connection)
        if row is None:
            raise NotFound("no break-glass account is set; create one with PUT /api/v1/auth/breakglass")
        return row

    async def _audit(
        self,
        connection: AsyncConnection,
        actor: Actor,
        action: str,
        username: str,
        now: datetime,
        request: RequestInfo | None,
        details: dict[str, Any],
    ) -> None:
        record = audit_record(
            actor=actor,
            action=action,
            resource_type="breakglass_account",
            resource_id=username,
            at=now,
            request=request,
            details=details,
        )
        await audit.append(connection, [record])


class AttemptLimiter:
    """A sliding window of at most ``limit`` attempts per ``window`` per client address, in memory.

    Memory is bounded: each client keeps at most ``limit`` timestamps, and at most ``max_clients``
    clients are tracked (the least recently seen is forgotten first). The limit holds per server
    process; the account lockout is what holds across replicas.
    """

    def __init__(
        self,
        clock: Callable[[], datetime],
        *,
        limit: int = 5,
        window: timedelta = timedelta(minutes=1),
        max_clients: int = 10_000,
    ) -> None:
        self._clock = clock
        self.limit, self.window, self.max_clients = limit, window, max_clients
        self._seen: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._reported: dict[str, datetime] = {}

    def admit(self, client: str) -> int | None:
        """Count an attempt; ``None`` when allowed, else how many seconds until the next one is."""
        now = self._clock()
        times = self._seen.get(client)
        if times is None:
            times = deque(maxlen=self.limit)
            self._seen[client] = times
            while len(self._seen) > self.max_clients:
                forgotten, _ = self._seen.popitem(last=False)
                self._reported.pop(forgotten, None)
        self._seen.move_to_end(client)
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return max(1, math.ceil((times[0] + self.window - now).total_seconds()))
        times.append(now)
        return None

    def first_refusal(self, client: str) -> bool:
        """True once per window for a client being refused: one audit row per burst, not per request."""
        now = self._clock()
        last = self._reported.get(client)
        if last is not None and now - last < self.window:
            return False
        self._reported[client] = now
        return True
