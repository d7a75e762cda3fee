"""External account binding (RFC 8555 §7.3.4) and the trusted internal-PKI mode of an ACME profile.

An operator creates an EAB key for one profile: a key id (``kid``) and an HMAC key shown once, sealed
under the master key at rest. An ACME client proves it holds the HMAC key when it creates its account:
``externalAccountBinding`` is a JWS over the account's public key (HS256/HS384/HS512, ``kid`` in the
protected header, ``url`` = the newAccount URL, no nonce). A key binds exactly one account.

Profile rules (under ``acme``): ``require_eab: true`` refuses accounts without a binding (and orders from
accounts not bound by a key of this profile); ``validation: "trusted"`` (only with ``require_eab``) is a
deliberate trust decision for internal PKI: a bound account is trusted for every name the profile
allows (SAN patterns, IP rule and the CA's name constraints), so its authorizations start ``valid``
and no challenge is run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from certctl.errors import Conflict, NotFound, ValidationFailed
from certctl.keys.envelope import SealError
from certctl.pki.names import NameConstraints, check_names, match_san_pattern
from certctl.services.acme import AcmeProfile
from certctl.services.acme_errors import AcmeError
from certctl.services.audit import Actor, RequestInfo, audit_record
from certctl.services.context import ServiceContext
from certctl.store.db import autocommit_reads, hot, unit_of_work
from certctl.store.repositories import acme_eab, audit, rows

HMAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
HMAC_KEY_BYTES = 32
TRUSTED = "trusted"


@dataclass(frozen=True)
class EabRules:
    """The EAB rules of a profile's ``acme`` block."""

    require_eab: bool = False
    trusted: bool = False


def eab_rules(rules: Mapping[str, Any]) -> EabRules:
    """Read ``acme.require_eab`` and ``acme.validation`` from a profile's rules; ``trusted`` counts only
    together with ``require_eab`` (the REST schema refuses it alone)."""
    block = rules.get("acme") or {}
    required = bool(block.get("require_eab", False))
    return EabRules(require_eab=required, trusted=required and block.get("validation") == TRUSTED)


@dataclass(frozen=True)
class NewEabKey:
    """A key as created: ``hmac_key`` (base64url) is shown this once."""

    key: dict[str, Any]
    hmac_key: str

    def __repr__(self) -> str:
        return f"NewEabKey(kid={self.key.get('kid')!r}, hmac_key=<redacted>)"


def key_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A key as the API lists it: never the HMAC key."""
    return {k: v for k, v in row.items() if k != "hmac_sealed"}


def _b64url_decode(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise AcmeError("malformed", f"the external account binding {what} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise AcmeError("malformed", f"the external account binding {what} is not base64url") from None


def _aad(kid: str) -> bytes:
    return f"acme-eab:{kid}".encode()


BOUND_CACHE_SIZE = 100_000


class AcmeEabKeys:
    def __init__(self, context: ServiceContext) -> None:
        self._ctx = context
        self._bound: dict[str, str] = {}
        """Account id -> the profile of the EAB key that bound it. A binding is never undone or changed
        (revoking a key stops it binding new accounts only), so a binding read once holds."""

    async def _bound_profile(self, account_id: str) -> str | None:
        """The profile of the EAB key bound to the account, None for an account bound by none."""
        found = self._bound.get(account_id)
        if found is not None:
            return found
        async with hot(self._ctx.engine) as connection:
            key = await acme_eab.key_of_account(connection, account_id)
        if key is None:
            return None
        if len(self._bound) >= BOUND_CACHE_SIZE:
            self._bound.clear()
        self._bound[account_id] = str(key["profile"])
        return self._bound[account_id]

    async def create(
        self,
        *,
        profile: str,
        name: str | None,
        expires_in: timedelta | None,
        actor: Actor,
        request: RequestInfo | None = None,
    ) -> NewEabKey:
        now = self._ctx.clock.now()
        kid = f"eab_{secrets.token_hex(12)}"
        secret = secrets.token_bytes(HMAC_KEY_BYTES)
        async with unit_of_work(self._ctx.engine) as uow:
            found = await rows.find(uow.connection, rows.PROFILES, profile)
            if found is None:
                raise ValidationFailed(f"profile {profile!r} does not exist")
            record = {
                "kid": kid,
                "name": name or kid,
                "profile": found["name"],
                "hmac_sealed": self._ctx.master_key.seal(secret, aad=_aad(kid)),
                "created_by": actor.name,
                "created_at": now,
                "expires_at": now + expires_in if expires_in else None,
                "revoked_at": None,
                "account_id": None,
                "bound_at": None,
            }
            await acme_eab.insert_key(uow.connection, record)
            await self._audit(uow.connection, "acme.eab_key.created", kid, actor, request, found["name"])
        encoded = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
        return NewEabKey(key=key_view(record), hmac_key=encoded)

    async def list_keys(self, *, profile: str | None = None) -> list[dict[str, Any]]:
        async with autocommit_reads(self._ctx.engine) as connection:
            if profile is not None:
                found = await rows.find(connection, rows.PROFILES, profile)
                profile = found["name"] if found is not None else profile
            return [key_view(row) for row in await acme_eab.list_keys(connection, profile=profile)]

    async def revoke(self, *, kid: str, actor: Actor, request: RequestInfo | None = None) -> dict[str, Any]:
        """A revoked key binds no new account (an account it already bound stays as it is)."""
        now = self._ctx.clock.now()
        async with unit_of_work(self._ctx.engine) as uow:
            row = await acme_eab.get_key(uow.connection, kid)
            if row is None:
                raise NotFound(f"EAB key {kid!r} does not exist")
            if not await acme_eab.revoke(uow.connection, kid=kid, now=now):
                raise Conflict(f"EAB key {kid!r} is already revoked")
            await self._audit(uow.connection, "acme.eab_key.revoked", kid, actor, request, row["profile"])
        return key_view(row | {"revoked_at": now})

    async def _audit(
        self,
        connection: AsyncConnection,
        action: str,
        kid: str,
        actor: Actor,
        request: RequestInfo | None,
        profile: str,
    ) -> None:
        record = audit_record(
            actor=actor,
            action=action,
            resource_type="acme_eab_key",
            resource_id=kid,
            at=self._ctx.clock.now(),
            request=request,
            details={"profile": profile},
        )
        await audit.append(connection, [record])

    async def verify_binding(self, *, profile: str, thumbprint: str, url: str, binding: Any) -> str:
        """RFC 8555 §7.3.4: the kid of a valid binding of the account key (by its RFC 7638 thumbprint)."""
        if not isinstance(binding, dict) or set(binding) != {"protected", "payload", "signature"}:
            raise AcmeError("malformed", "externalAccountBinding must be a flattened JWS")
        protected = self._json(_b64url_decode(binding["protected"], "protected header"), "protected header")
        alg, kid = protected.get("alg"), protected.get("kid")
        if alg not in HMAC_ALGORITHMS:
            raise AcmeError("malformed", "the external account binding must use HS256, HS384 or HS512")
        if "nonce" in protected or not isinstance(kid, str) or protected.get("url") != url:
            raise AcmeError("malformed", "the external account binding needs kid and the newAccount url")
        payload = self._json(_b64url_decode(binding["payload"], "payload"), "payload")
        try:
            bound_thumbprint = JWKRegistry.import_key(payload).thumbprint()
        except (JoseError, ValueError, TypeError, KeyError):
            raise AcmeError("malformed", "the external account binding payload is not a JWK") from None
        if bound_thumbprint != thumbprint:
            raise AcmeError("unauthorized", "the external account binding is for another account key")
        secret = await self._usable_secret(kid=kid, profile=profile)
        signing_input = f"{binding['protected']}.{binding['payload']}".encode()
        expected = hmac.new(secret, signing_input, HMAC_ALGORITHMS[alg]).digest()
        if not hmac.compare_digest(expected, _b64url_decode(binding["signature"], "signature")):
            raise AcmeError("unauthorized", "the external account binding signature does not verify")
        return kid

    @staticmethod
    def _json(raw: bytes, what: str) -> dict[str, Any]:
        try:
            value = json.loads(raw)
        except ValueError:
            raise AcmeError("malformed", f"the external account binding {what} is not JSON") from None
        if not isinstance(value, dict):
            raise AcmeError("malformed", f"the external account binding {what} must be a JSON object")
        return value

    async def _usable_secret(self, *, kid: str, profile: str) -> bytes:
        async with autocommit_reads(self._ctx.engine) as connection:
            row = await acme_eab.get_key(connection, kid)
        now = self._ctx.clock.now()
        if row is None or row["profile"] != profile:
            raise AcmeError("unauthorized", "unknown external account key id for this directory")
        if row["revoked_at"] is not None:
            raise AcmeError("unauthorized", "the external account key is revoked")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise AcmeError("unauthorized", "the external account key has expired")
        if row["account_id"] is not None:
            raise AcmeError("unauthorized", "the external account key is already bound to an account")
        try:
            return self._ctx.master_key.open(row["hmac_sealed"], aad=_aad(kid))
        except SealError:
            raise AcmeError("serverInternal", "the external account key cannot be opened") from None

    async def bind(self, connection: AsyncConnection, *, kid: str, account_id: str) -> None:
        """Within the caller's unit of work (with the account insert): single use, first one wins."""
        if not await acme_eab.bind(connection, kid=kid, account_id=account_id, now=self._ctx.clock.now()):
            raise AcmeError("unauthorized", "the external account key is already bound to an account")

    async def admit_order(
        self, *, account_id: str, profile: AcmeProfile, identifiers: list[dict[str, str]]
    ) -> bool:
        """Whether a new order skips validation (trusted mode). A profile that requires EAB takes orders
        only from accounts bound by one of its own keys; in trusted mode every name must be one the
        profile allows (``rejectedIdentifier`` otherwise)."""
        rules = eab_rules(profile.row["rules"])
        if not rules.require_eab:
            return False
        if await self._bound_profile(account_id) != profile.name:
            raise AcmeError("unauthorized", "this directory takes orders only from EAB-bound accounts")
        if not rules.trusted:
            return False
        outside = await names_outside(
            self._ctx.engine,
            rules=profile.row["rules"],
            ca_id=(profile.issuer.get("options") or {}).get("ca"),
            identifiers=identifiers,
        )
        if outside:
            raise AcmeError("rejectedIdentifier", "; ".join(outside))
        return True


async def names_outside(
    engine: AsyncEngine,
    *,
    rules: Mapping[str, Any],
    ca_id: str | None,
    identifiers: list[dict[str, str]],
) -> list[str]:
    """Why a trusted profile does not allow these identifiers: its SAN patterns, its IP rule, and the
    name constraints of its issuing CA and every CA above it (RFC 5280 §4.2.1.10). Empty: all allowed."""
    dns = [i["value"] for i in identifiers if i["type"] == "dns"]
    ips = [i["value"] for i in identifiers if i["type"] == "ip"]
    problems: list[str] = []
    patterns = rules.get("san_patterns") or []
    if patterns:
        problems += [
            f"{n!r} matches none of the profile's SAN patterns" for n in dns if not _matches(n, patterns)
        ]
    if ips and not rules.get("allow_ip_sans", True):
        problems.append("the profile does not allow IP addresses")
    for constraints in await _chain_constraints(engine, ca_id):
        if not constraints.is_empty:
            problems += check_names(constraints, dns_names=dns, ip_addresses=ips, emails=())
    return problems


_CHAIN_CONSTRAINTS: dict[str, tuple[NameConstraints, ...]] = {}


async def _chain_constraints(engine: AsyncEngine, ca_id: str | None) -> tuple[NameConstraints, ...]:
    """The name constraints of a CA and of every CA above it. A CA's constraints and parent are part of
    its certificate and never change, so a complete chain is read once per process."""
    if ca_id is None:
        return ()
    cached = _CHAIN_CONSTRAINTS.get(ca_id)
    if cached is not None:
        return cached
    found: list[NameConstraints] = []
    current: str | None = ca_id
    async with autocommit_reads(engine) as connection:
        while current is not None and len(found) < 16:
            ca = await rows.get(connection, rows.CAS, current)
            if ca is None:
                return tuple(found)
            found.append(NameConstraints.from_dict(ca["name_constraints"] or {}))
            current = ca["parent_id"]
    if len(_CHAIN_CONSTRAINTS) >= 1000:
        _CHAIN_CONSTRAINTS.clear()
    _CHAIN_CONSTRAINTS[ca_id] = tuple(found)
    return _CHAIN_CONSTRAINTS[ca_id]


def _matches(name: str, patterns: list[str]) -> bool:
    return any(match_san_pattern(name, pattern) for pattern in patterns)
