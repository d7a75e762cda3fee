"""The ACME server's use cases (RFC 8555), wired together: settings, which profiles serve ACME, and the
parts (nonces, accounts, orders, validation, certificates) the protocol edge calls.

A profile serves ACME unless its rules say ``"acme": {"enabled": false}``; ``acme.allow_wildcards``
(default false) allows wildcard identifiers and ``acme.issuer`` picks the issuer. Without one, the issuer
is ``CERTCTL_ACME_ISSUER``, else the only enabled issuer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from certctl.errors import NotFound
from certctl.services.acme_errors import AcmeError
from certctl.services.context import ServiceContext
from certctl.services.lookups import RowCache
from certctl.store.db import autocommit_reads
from certctl.store.repositories import rows


@dataclass(frozen=True)
class AcmeConfig:
    default_profile: str = "default"
    http01_port: int = 80
    """Where http-01 is fetched (RFC 8555 §8.3 says 80; tests and labs use a high port)."""
    tlsalpn01_port: int = 443
    """Where tls-alpn-01 connects (RFC 8737 §3 says 443)."""
    dns_resolver: str | None = None
    """``host:port`` of the DNS server that resolves names to validate; None uses the system resolver."""
    terms_of_service: str | None = None
    website: str | None = None
    caa_identities: tuple[str, ...] = ()
    issuer: str | None = None
    order_ttl: timedelta = timedelta(days=7)
    """Orders and their authorizations expire together."""
    orders_per_account_hour: int = 300
    """Rate limit: new orders per account per rolling hour, across replicas (0: none)."""
    failures_per_identifier_hour: int = 5
    """Rate limit: failed authorizations of one account for one name per rolling hour (0: none)."""
    orders_per_domain_hour: int = 0
    """Rate limit: new orders of every account naming one registered domain per rolling hour (0: none)."""
    accounts_per_address_hour: int = 0
    """Rate limit: new accounts created from one client address (IPv6: its /64) per rolling hour (0:
    none)."""
    authz_reuse: timedelta = timedelta(days=1)
    """A new order reuses a valid authorization the same account proved within this window (zero: never)."""
    nonce_ttl: timedelta = timedelta(hours=1)
    validation_timeout_seconds: float = 10.0
    stale_validation_after: timedelta = timedelta(minutes=2)
    """A ``processing`` challenge untouched this long lost its validation (process stopped): run again."""
    retry_after_seconds: int = 1


@dataclass(frozen=True)
class AcmeProfile:
    """A profile as ACME serves it: its row, the issuer it signs with, and its ACME rules."""

    row: dict[str, Any]
    issuer: dict[str, Any]
    allow_wildcards: bool = False
    allow_ip: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.row["name"])


RESOLVED_SECONDS = 1.0
"""How long a resolved profile (with its issuer) is reused: every ACME request resolves its directory's
profile. The entry also lapses as soon as the profile cache drops or replaces the profile's row."""


class AcmeProfiles:
    def __init__(self, context: ServiceContext, config: AcmeConfig, profiles: RowCache) -> None:
        self._ctx = context
        self._config = config
        self._profiles = profiles
        self._resolved: dict[str, tuple[float, AcmeProfile]] = {}

    async def resolve(self, name: str) -> AcmeProfile:
        """The ACME-enabled profile of that name; ``malformed`` 404 when there is none."""
        cached = self._resolved.get(name)
        if (
            cached is not None
            and time.monotonic() - cached[0] < RESOLVED_SECONDS
            and self._profiles.peek(name) is cached[1].row
        ):
            return cached[1]
        found = await self._resolve(name)
        if len(self._resolved) > 1000:
            self._resolved.clear()
        self._resolved[name] = (time.monotonic(), found)
        return found

    async def _resolve(self, name: str) -> AcmeProfile:
        async with autocommit_reads(self._ctx.engine) as connection:
            try:
                row = await self._profiles.find(connection, name)
            except NotFound:
                raise AcmeError("malformed", f"no ACME directory for profile {name!r}", status=404) from None
            rules = row["rules"].get("acme") or {}
            if not rules.get("enabled", True):
                raise AcmeError("malformed", f"no ACME directory for profile {name!r}", status=404)
            issuer = await self._issuer(connection, rules.get("issuer") or self._config.issuer)
        return AcmeProfile(
            row=row,
            issuer=issuer,
            allow_wildcards=bool(rules.get("allow_wildcards", False)),
            allow_ip=bool(row["rules"].get("allow_ip_sans", True)),
        )

    async def _issuer(self, connection: Any, ref: str | None) -> dict[str, Any]:
        if ref is not None:
            found = await rows.find(connection, rows.ISSUERS, ref)
            if found is None or not found["enabled"]:
                raise AcmeError("serverInternal", "the ACME issuer is missing or disabled")
            return found
        enabled = [r for r in await rows.list_all(connection, rows.ISSUERS) if r["enabled"]]
        if len(enabled) != 1:
            raise AcmeError("serverInternal", "no ACME issuer is configured (set CERTCTL_ACME_ISSUER)")
        return enabled[0]
