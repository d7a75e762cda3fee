"""Publish CRLs per CA: a full CRL and a delta CRL (RFC 5280 §5, §5.2.4), regenerated after revocations
and on a schedule, stored in ``crl_state`` and held in memory for the HTTP hot path.

Each regeneration takes two numbers from the CA's one sequence (full N, delta N+1), since full and delta
CRLs share it (§5.2.4) and a delta must carry a higher number than any full CRL it extends. The delta
lists every revocation since its *base*, a full CRL that is kept for up to one validity period, so a
relying party holding that base (or any later full CRL) learns of new revocations from the small delta.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from certctl.domain.revocation import CrlSchedule, RevocationReason
from certctl.errors import CertctlError, Conflict, NotFound
from certctl.pki.crl import CrlSpec, RevokedEntry, build_crl
from certctl.services.ca_material import CaMaterialCache
from certctl.services.context import ServiceContext
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories import revocations, rows

log = logging.getLogger("certctl.crl")
_CODES = {reason.rfc_name: int(reason) for reason in RevocationReason}


@dataclass(frozen=True)
class PublishedCrl:
    ca_id: str
    number: int
    der: bytes
    this_update: datetime
    next_update: datetime
    delta_of: int | None = None


def crl_urls(public_http_url: str, ca_id: str) -> tuple[str, str]:
    """The full CRL URL (what issued certificates carry as CDP) and the delta CRL URL."""
    return f"{public_http_url}/crl/{ca_id}.crl", f"{public_http_url}/crl/{ca_id}-delta.crl"


class CrlService:
    def __init__(self, context: ServiceContext, ca_cache: CaMaterialCache, schedule: CrlSchedule) -> None:
        self._ctx = context
        self._cas = ca_cache
        self.schedule = schedule
        self._published: dict[str, tuple[float, PublishedCrl, PublishedCrl]] = {}

    async def regenerate(self, ca_id: str) -> tuple[PublishedCrl, PublishedCrl]:
        """Sign and store a new full and delta CRL for the CA; clears its pending-revocation mark."""
        published = await self._publish(ca_id, only_if_owed=False)
        assert published is not None
        return published

    def owed(self, state: dict[str, Any] | None, now: datetime) -> bool:
        """Never published, revocations pending, or older than half its validity."""
        return (
            state is None
            or state["full_this_update"] is None
            or state["stale_since"] is not None
            or self.schedule.due(this_update=state["full_this_update"], now=now)
        )

    async def _publish(self, ca_id: str, *, only_if_owed: bool) -> tuple[PublishedCrl, PublishedCrl] | None:
        """``only_if_owed`` re-checks under the row lock, so replicas running the schedule at the same
        moment publish once, not once each."""
        now = self._ctx.clock.now().replace(microsecond=0)
        schedule = self.schedule
        async with unit_of_work(self._ctx.engine) as uow:
            ca = await self._cas.load(uow.connection, ca_id)
            if ca.key is None:
                raise Conflict(f"CA {ca.name!r} has no private key here; it cannot sign CRLs")
            state = await revocations.claim(uow.connection, ca.id, at=now)
            if only_if_owed and not self.owed(state, now):
                return None
            full_number = int(state["last_number"]) + 1
            base_number, base_this_update = state["base_number"], state["base_this_update"]
            if base_number is None or schedule.base_due(base_this_update=base_this_update, now=now):
                base_number, base_this_update = full_number, now
            entries = [
                RevokedEntry(int(serial, 16), revoked_at, _CODES.get(reason or ""), invalidity_date)
                async for serial, revoked_at, reason, invalidity_date in revocations.revoked_entries(
                    uow.connection, ca_id=ca.id, expired_before=schedule.listed_until(now)
                )
            ]
            since = base_this_update - schedule.delta_overlap
            delta_entries = [entry for entry in entries if entry.revoked_at >= since]
            full_url, delta_url = crl_urls(self._ctx.public_http_url, ca.id)
            next_update = now + schedule.validity
            full_spec = CrlSpec(full_number, now, next_update, full_url, freshest_url=delta_url)
            delta_spec = CrlSpec(full_number + 1, now, next_update, full_url, delta_of=base_number)
            full_der = await asyncio.to_thread(
                build_crl, ca_cert=ca.certificate, ca_key=ca.key, spec=full_spec, entries=entries
            )
            delta_der = build_crl(
                ca_cert=ca.certificate, ca_key=ca.key, spec=delta_spec, entries=delta_entries
            )
            await revocations.save(
                uow.connection,
                ca.id,
                {
                    "last_number": full_number + 1,
                    "full_number": full_number,
                    "full_der": full_der,
                    "full_this_update": now,
                    "full_next_update": next_update,
                    "delta_number": full_number + 1,
                    "delta_der": delta_der,
                    "delta_this_update": now,
                    "delta_next_update": next_update,
                    "base_number": base_number,
                    "base_this_update": base_this_update,
                    "stale_since": None,
                    "updated_at": now,
                },
            )
        full = PublishedCrl(ca.id, full_number, full_der, now, next_update)
        delta = PublishedCrl(ca.id, full_number + 1, delta_der, now, next_update, delta_of=base_number)
        self._published[ca.id] = (time.monotonic(), full, delta)
        log.info(
            "published CRL %d and delta %d for CA %s (%d entries)",
            full_number,
            full_number + 1,
            ca.id,
            len(entries),
        )
        return full, delta

    async def refresh_due(self) -> list[str]:
        """The periodic job: regenerate for every CA that can sign and owes a CRL (never published,
        revocations pending, or older than half its validity). Returns the CA ids done."""
        now = self._ctx.clock.now()
        async with read_only(self._ctx.engine) as connection:
            cas = await rows.list_all(connection, rows.CAS)
            states = {state["ca_id"]: state for state in await revocations.all_states(connection)}
        done: list[str] = []
        for ca in cas:
            if ca["key_sealed"] is None:
                continue
            if not self.owed(states.get(ca["id"]), now):
                continue
            try:
                published = await self._publish(ca["id"], only_if_owed=True)
            except CertctlError as exc:
                log.warning("could not publish a CRL for CA %s: %s", ca["id"], exc.message)
                continue
            if published is not None:
                done.append(ca["id"])
        return done

    async def current(self, ca_id: str, *, delta: bool = False) -> PublishedCrl:
        """The CRL to serve: from memory for a few seconds, then from memory again while the stored CRL
        numbers are unchanged (one small read, not megabytes of DER), else the stored one, else a new one
        (a CA's first fetch, or a stored CRL past its nextUpdate because no leader ran the schedule)."""
        now = self._ctx.clock.now()
        cached = self._published.get(ca_id)
        fresh = cached is not None and time.monotonic() - cached[0] < self._ctx.cache_ttl_seconds
        if cached is not None and fresh and cached[1].next_update > now:
            return cached[2] if delta else cached[1]
        async with read_only(self._ctx.engine) as connection:
            numbers = await revocations.published_numbers(connection, ca_id)
            unchanged = cached is not None and numbers == (cached[1].number, cached[2].number)
            if cached is not None and unchanged and cached[1].next_update > now:
                self._published[ca_id] = (time.monotonic(), cached[1], cached[2])
                return cached[2] if delta else cached[1]
            state = await revocations.get(connection, ca_id)
        if state is None or state["full_der"] is None or state["full_next_update"] <= now:
            if state is None and await self._unknown(ca_id):
                raise NotFound(f"CA {ca_id!r} does not exist")
            full, delta_crl = await self.regenerate(ca_id)
        else:
            full = PublishedCrl(
                ca_id,
                state["full_number"],
                state["full_der"],
                state["full_this_update"],
                state["full_next_update"],
            )
            delta_crl = PublishedCrl(
                ca_id,
                state["delta_number"],
                state["delta_der"],
                state["delta_this_update"],
                state["delta_next_update"],
                delta_of=state["base_number"],
            )
            self._published[ca_id] = (time.monotonic(), full, delta_crl)
        return delta_crl if delta else full

    async def _unknown(self, ca_id: str) -> bool:
        async with read_only(self._ctx.engine) as connection:
            return await rows.get(connection, rows.CAS, ca_id) is None
