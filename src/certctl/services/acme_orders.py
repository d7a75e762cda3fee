"""ACME orders, authorizations and challenges (RFC 8555 §7.4, §7.5): create, read, respond.

Each order gets its own authorizations (one per identifier); they expire with the order. A DNS name is
offered http-01, dns-01 and tls-alpn-01, a wildcard name dns-01 only (RFC 8555 §7.1.3), an IP address
http-01 and tls-alpn-01 (RFC 8738 §7: no dns-01 for an address). Identifiers are
DNS names (wildcards only where the profile allows them) and, per RFC 8738, IP addresses where the
profile allows IP SANs.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

from certctl.pki.names import match_san_pattern
from certctl.services.acme import AcmeConfig, AcmeProfile
from certctl.services.acme_accounts import new_acme_id
from certctl.services.acme_ari import AcmeRenewalInfo
from certctl.services.acme_eab import AcmeEabKeys
from certctl.services.acme_errors import AcmeError, not_found, per_identifier
from certctl.services.acme_limits import RATE_WINDOW, order_refused, registered_domain
from certctl.services.context import ServiceContext
from certctl.store.db import autocommit_reads, hot, unit_of_work
from certctl.store.repositories import acme

MAX_IDENTIFIERS = 100
CHALLENGE_TYPES = ("http-01", "dns-01", "tls-alpn-01")
"""Every type the server validates, in the order an authorization lists them."""
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def challenge_types(identifier_type: str, *, wildcard: bool) -> tuple[str, ...]:
    """The challenges an identifier can be proved with."""
    if identifier_type == "ip":
        return ("http-01", "tls-alpn-01")
    return ("dns-01",) if wildcard else CHALLENGE_TYPES


def normalise_identifier(identifier: Any, profile: AcmeProfile) -> dict[str, str]:
    if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
        raise AcmeError("malformed", "each identifier needs a type and a value")
    kind, value = identifier.get("type"), identifier["value"].strip()
    if kind == "ip":
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise AcmeError("rejectedIdentifier", f"{value!r} is not an IP address") from None
        if not profile.allow_ip:
            raise AcmeError("rejectedIdentifier", f"profile {profile.name!r} does not allow IP addresses")
        return {"type": "ip", "value": str(address)}
    if kind != "dns":
        raise AcmeError("unsupportedIdentifier", f"identifier type {kind!r} is not supported")
    name = value.lower().rstrip(".")
    labels = name.removeprefix("*.").split(".")
    if len(name) > 253 or not all(LABEL.match(label) for label in labels):
        raise AcmeError("rejectedIdentifier", f"{value!r} is not a valid DNS name")
    if name.startswith("*.") and not profile.allow_wildcards:
        raise AcmeError("rejectedIdentifier", f"profile {profile.name!r} does not allow wildcard names")
    patterns = profile.row["rules"].get("san_patterns") or []
    if patterns and not any(match_san_pattern(name, pattern) for pattern in patterns):
        raise AcmeError("rejectedIdentifier", f"{name!r} matches none of the profile's SAN patterns")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return {"type": "dns", "value": name}
    raise AcmeError("rejectedIdentifier", "IP addresses use the identifier type 'ip' (RFC 8738)")


class AcmeOrders:
    def __init__(self, context: ServiceContext, config: AcmeConfig, ari: AcmeRenewalInfo) -> None:
        self._ctx = context
        self._config = config
        self._eab = AcmeEabKeys(context)
        self._ari = ari

    async def create(
        self, *, account: dict[str, Any], profile: AcmeProfile, payload: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """RFC 8555 §7.4: a pending order with one pending authorization per identifier; the order and
        the ids of its authorizations (sorted by identifier, as reads list them)."""
        raw = payload.get("identifiers")
        if not isinstance(raw, list) or not raw or len(raw) > MAX_IDENTIFIERS:
            raise AcmeError("malformed", f"an order needs 1 to {MAX_IDENTIFIERS} identifiers")
        if payload.get("notBefore") or payload.get("notAfter"):
            raise AcmeError("malformed", "notBefore and notAfter are not supported; the profile decides")
        normalised, rejected = [], []
        for item in raw:
            try:
                normalised.append(normalise_identifier(item, profile))
            except AcmeError as error:
                rejected.append((item, error))
        if rejected:
            raise per_identifier(rejected, len(raw))
        identifiers = list({(i["type"], i["value"]): i for i in normalised}.values())
        replaces = payload.get("replaces")
        if replaces is not None:
            if not isinstance(replaces, str):
                raise AcmeError("malformed", "replaces must be a certificate identifier string (RFC 9773)")
            await self._ari.check_replaces(account=account, cert_id=replaces, identifiers=identifiers)
        trusted = await self._eab.admit_order(
            account_id=account["id"], profile=profile, identifiers=identifiers
        )
        now = self._ctx.clock.now()
        expires = now + self._config.order_ttl
        order = {
            "id": new_acme_id("ordr"),
            "account_id": account["id"],
            "profile": profile.name,
            "status": "ready" if trusted else "pending",
            "identifiers": identifiers,
            "expires_at": expires,
            "error": None,
            "certificate_id": None,
            "version_id": None,
            "approval_id": None,
            "replaces": replaces,
            "created_at": now,
            "updated_at": now,
        }
        authorizations, challenges = [], []
        reusable = {} if trusted else await self._reusable(account["id"], identifiers, now)
        for identifier in identifiers:
            authz_id = new_acme_id("authz")
            wildcard = identifier["value"].startswith("*.")
            key = (identifier["type"], identifier["value"].removeprefix("*."), wildcard)
            earlier = reusable.get(key)
            if earlier is not None:  # proven recently by this account: a valid copy, no new challenge
                previous, proof = earlier
                authorizations.append(
                    {
                        "id": authz_id,
                        "order_id": order["id"],
                        "identifier_type": key[0],
                        "identifier_value": key[1],
                        "wildcard": wildcard,
                        "registered_domain": registered_domain(key[0], key[1]),
                        "status": "valid",
                        "expires_at": min(previous["expires_at"], expires),
                        "created_at": now,
                    }
                )
                challenges.append(
                    {
                        "id": new_acme_id("chal"),
                        "authorization_id": authz_id,
                        "type": proof["type"],
                        "token": proof["token"],
                        "status": "valid",
                        "validated_at": proof["validated_at"],
                        "error": None,
                        "updated_at": now,
                    }
                )
                continue
            authorizations.append(
                {
                    "id": authz_id,
                    "order_id": order["id"],
                    "identifier_type": identifier["type"],
                    "identifier_value": identifier["value"].removeprefix("*."),
                    "wildcard": wildcard,
                    "registered_domain": registered_domain(identifier["type"], identifier["value"]),
                    "status": "valid" if trusted else "pending",
                    "expires_at": expires,
                    "created_at": now,
                }
            )
            challenges += [
                {
                    "id": new_acme_id("chal"),
                    "authorization_id": authz_id,
                    "type": kind,
                    "token": secrets.token_urlsafe(32),
                    "status": "pending",
                    "validated_at": None,
                    "error": None,
                    "updated_at": now,
                }
                for kind in challenge_types(identifier["type"], wildcard=wildcard)
                if not trusted
            ]
        if authorizations and all(a["status"] == "valid" for a in authorizations):
            order["status"] = "ready"
        limits = acme.OrderLimits(
            since=now - RATE_WINDOW,
            orders=self._config.orders_per_account_hour,
            failures=0 if trusted else self._config.failures_per_identifier_hour,
            domains=self._config.orders_per_domain_hour,
        )
        async with hot(self._ctx.engine) as connection:
            refused = await acme.insert_order(
                connection, order=order, authorizations=authorizations, challenges=challenges, limits=limits
            )
        if refused is not None:
            raise order_refused(refused, limits, now)
        return order, [a["id"] for a in sorted(authorizations, key=lambda a: a["identifier_value"])]

    async def _reusable(
        self, account_id: str, identifiers: list[dict[str, str]], now: datetime
    ) -> dict[tuple[str, str, bool], tuple[dict[str, Any], dict[str, Any]]]:
        """Authorizations this account proved recently (RFC 8555 §7.1.4 lets a server reuse them): still
        valid for at least an hour, and proven within ``authz_reuse`` (within eight hours when CAA is
        checked, so a changed CAA record is seen again)."""
        window = self._config.authz_reuse
        if window <= timedelta(0):
            return {}
        if self._config.caa_identities:
            window = min(window, timedelta(hours=8))
        wanted = [
            (i["type"], i["value"].removeprefix("*."), i["value"].startswith("*.")) for i in identifiers
        ]
        async with autocommit_reads(self._ctx.engine) as connection:
            return await acme.reusable_authorizations(
                connection,
                account_id=account_id,
                identifiers=wanted,
                valid_after=now + timedelta(hours=1),
                validated_after=now - window,
            )

    async def order(self, *, account: dict[str, Any], order_id: str) -> tuple[dict[str, Any], list[str]]:
        """The account's order and the ids of its authorizations (one read)."""
        async with hot(self._ctx.engine) as connection:
            order, authz_ids = await acme.order_and_authorizations(connection, order_id)
        if order is None or order["account_id"] != account["id"]:
            raise not_found("order")
        return order, authz_ids

    async def authorization(
        self, *, account: dict[str, Any], authz_id: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with hot(self._ctx.engine) as connection:
            found = await acme.authorization_with_challenges(connection, authz_id)
        if found is None or found[1] != account["id"]:
            raise not_found("authorization")
        authz, _, challenges = found
        return authz, sorted(challenges, key=lambda c: CHALLENGE_TYPES.index(c["type"]))

    async def deactivate_authorization(self, *, account: dict[str, Any], authz_id: str) -> None:
        """RFC 8555 §7.5.2: the client gives up an authorization; its order can no longer succeed."""
        authz, _ = await self.authorization(account=account, authz_id=authz_id)
        if authz["status"] not in ("pending", "valid"):
            raise AcmeError("malformed", f"the authorization is {authz['status']}")
        async with unit_of_work(self._ctx.engine) as uow:
            await acme.update_authorization(uow.connection, authz_id, {"status": "deactivated"})
            await acme.update_order(
                uow.connection, authz["order_id"], {"status": "invalid", "updated_at": self._ctx.clock.now()}
            )

    async def challenge(
        self, *, account: dict[str, Any], challenge_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The challenge and its authorization, if the account owns them (one read)."""
        async with hot(self._ctx.engine) as connection:
            found = await acme.challenge_in_context(connection, challenge_id)
        if found is None or found[2] != account["id"]:
            raise not_found("challenge")
        return found[0], found[1]

    async def respond(
        self, *, account: dict[str, Any], challenge_id: str
    ) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """RFC 8555 §7.5.1: the client is ready; a pending challenge becomes ``processing``. Returns the
        challenge, its authorization (as read before the change) and True when this call started the
        validation (the caller schedules it)."""
        async with hot(self._ctx.engine) as connection:
            claimed = await acme.claim_challenge(
                connection, challenge_id=challenge_id, account_id=account["id"], now=self._ctx.clock.now()
            )
        if claimed is not None:  # the usual case: read and changed by one statement
            return claimed[0], claimed[1], True
        challenge, authz = await self.challenge(account=account, challenge_id=challenge_id)
        if challenge["status"] != "pending":
            return challenge, authz, False
        if authz["status"] != "pending" or authz["expires_at"] <= self._ctx.clock.now():
            raise AcmeError("malformed", f"the authorization is {authz['status']}")
        now = self._ctx.clock.now()
        changes = {"status": "processing", "updated_at": now}
        async with hot(self._ctx.engine) as connection:
            started = await acme.start_validation(connection, challenge_id, now=now)
        return (challenge | changes if started else challenge), authz, started
