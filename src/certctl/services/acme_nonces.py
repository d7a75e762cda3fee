"""Anti-replay nonces (RFC 8555 §6.5) that every replica accepts without a shared cache.

A nonce is ``base64url(issued_at(8) || random(16) || HMAC-SHA256(key, issued_at || random)[:16])`` with the
key derived from the master key: any replica can check that it made the nonce and that it is recent with no
database read, so ``newNonce`` costs nothing. Single use is enforced when a nonce is spent: it is inserted
into ``acme_used_nonces`` (primary key), so a replay fails on any replica. Spent rows are kept only until
the nonce would be refused as too old anyway, then the leader's sweep deletes them.

On PostgreSQL the requests whose handlers begin with a statement of their own (orders, authorizations,
challenges, finalize, certificates) do not spend the nonce apart: :meth:`NonceBook.rider` hands the
insert to that first statement (``WITH spent_nonce AS (INSERT ...) <statement>``), so the spend and
the request's changes commit or fail together and a replay changes nothing. :meth:`settle` spends the
nonce the usual way if no statement took it (a request refused before it reached the database).

Otherwise spending is group-committed on both engines: the nonces of concurrent requests are inserted
together, on PostgreSQL by one statement run on its own (no BEGIN/COMMIT round trips), on SQLite in one
transaction. Whoever finds no flush running flushes everything queued and hands what queued meanwhile
to a short task, so a burst of requests costs one round trip rather than one each, and each request
still waits for its own row.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from certctl.domain.clock import Clock
from certctl.keys.envelope import MasterKey
from certctl.services.acme_errors import AcmeError
from certctl.store.db import Rider, hot
from certctl.store.repositories import acme

NONCE_PURPOSE = "acme-nonce-v1"
RAW_LENGTH = 8 + 16 + 16


class NonceBook:
    def __init__(self, *, engine: AsyncEngine, master_key: MasterKey, clock: Clock, ttl: timedelta) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._key = master_key.derive(purpose=NONCE_PURPOSE)
        self._clock = clock
        self._ttl = ttl
        self._pending: list[tuple[str, datetime, asyncio.Future[bool]]] = []
        self._flushing = False
        self._drainers: set[asyncio.Task[None]] = set()

    def issue(self) -> str:
        body = struct.pack(">q", int(self._clock.now().timestamp())) + secrets.token_bytes(16)
        return _b64(body + self._mac(body))

    def issued_at(self, nonce: str) -> datetime:
        """When a nonce this server made was issued; ``badNonce`` when it is not ours or too old."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            raise AcmeError("badNonce", "the nonce is not one this server issued") from None
        if len(raw) != RAW_LENGTH or not hmac.compare_digest(raw[24:], self._mac(raw[:24])):
            raise AcmeError("badNonce", "the nonce is not one this server issued")
        issued = datetime.fromtimestamp(struct.unpack(">q", raw[:8])[0], UTC)
        if self._clock.now() - issued > self._ttl:
            raise AcmeError("badNonce", "the nonce has expired; fetch a new one")
        return issued

    def rider(self, nonce: str, issued: datetime | None = None) -> Rider | None:
        """The spend of ``nonce`` for the request's first statement to carry (see above); None on
        SQLite, where :meth:`spend` is the way. Checks the nonce as :meth:`issued_at` does, unless
        ``issued`` is what that said already."""
        if not self._postgres:
            return None
        expires = (issued or self.issued_at(nonce)) + self._ttl
        return acme.spent_nonce_rider(nonce, expires, _already_used)

    async def settle(self, rider: Rider) -> None:
        """After the request: spend the nonce if no statement carried it (``badNonce`` on a replay)."""
        if not rider.carried:
            rider.carried = True
            await self.spend(rider.values[0])

    async def spend(self, nonce: str, issued: datetime | None = None) -> None:
        """Check and mark used (group-committed, see above); ``badNonce`` on a replay. ``issued``: what
        :meth:`issued_at` said of this nonce already."""
        issued = issued or self.issued_at(nonce)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((nonce, issued + self._ttl, future))
        if not self._flushing:
            self._flushing = True
            try:
                while not future.done():
                    await self._flush()
            finally:
                self._flushing = False
                if self._pending:
                    self._flushing = True
                    task = asyncio.get_running_loop().create_task(self._drain())
                    self._drainers.add(task)
                    task.add_done_callback(self._drainers.discard)
        if not await future:
            raise _already_used()

    async def _drain(self) -> None:
        try:
            while self._pending:
                await self._flush()
        finally:
            self._flushing = False

    async def _flush(self) -> None:
        """Insert everything queued in one transaction; each waiter learns whether its nonce was fresh."""
        batch, self._pending = self._pending, []
        try:
            async with hot(self._engine) as connection:
                unused = await acme.spend_nonces(
                    connection, [(nonce, expires) for nonce, expires, _ in batch]
                )
            # A nonce sent twice in one batch: the first request spends it, the second is a replay.
            seen: set[str] = set()
            fresh = []
            for nonce, _, _ in batch:
                fresh.append(nonce in unused and nonce not in seen)
                seen.add(nonce)
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled mid-flush: the others' nonces go back to the queue
            self._pending = [entry for entry in batch if not entry[2].done()] + self._pending
            raise
        for (_, _, future), outcome in zip(batch, fresh, strict=True):
            if not future.done():
                future.set_result(outcome)

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:16]


def _already_used() -> AcmeError:
    return AcmeError("badNonce", "the nonce was already used")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
