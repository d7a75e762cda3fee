"""ACME accounts (RFC 8555 §7.3): create or find by key, read, update contacts, deactivate."""

from __future__ import annotations

import secrets
import time
from typing import Any

from certctl.services.acme import AcmeConfig
from certctl.services.acme_eab import AcmeEabKeys
from certctl.services.acme_errors import AcmeError
from certctl.services.acme_limits import RATE_WINDOW, account_refused
from certctl.services.context import ServiceContext
from certctl.store.db import autocommit_reads, unit_of_work
from certctl.store.repositories import acme

MAX_CONTACTS = 10
ORDERS_LISTED = 1000
ACCOUNT_CACHE_SECONDS = 2.0
"""How long a valid account found by ``kid`` is reused without a read. Changes made through this process
(deactivation, key roll-over) drop the entry at once; another replica's change shows within this time."""


def new_acme_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class AcmeAccounts:
    def __init__(self, context: ServiceContext, config: AcmeConfig, eab: AcmeEabKeys | None = None) -> None:
        self._ctx = context
        self._config = config
        self._eab = eab or AcmeEabKeys(context)
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._changes = 0  # bumped by forget(): a read that overlapped a change is not cached

    async def by_id(self, account_id: str) -> dict[str, Any]:
        """The account a ``kid`` names: ``accountDoesNotExist`` when unknown, ``unauthorized`` when
        deactivated (RFC 8555 §7.3.6). Only valid accounts are cached, briefly (every request of a client
        reads its account)."""
        cached = self._cache.get(account_id)
        if cached is not None and time.monotonic() - cached[0] < ACCOUNT_CACHE_SECONDS:
            return dict(cached[1])
        changes_before = self._changes
        async with autocommit_reads(self._ctx.engine) as connection:
            account = await acme.get_account(connection, account_id)
        if account is None:
            raise AcmeError("accountDoesNotExist", "no account exists for this key id")
        if account["status"] != "valid":
            self.forget(account_id)
            raise AcmeError("unauthorized", f"the account is {account['status']}")
        if len(self._cache) > 10000:
            self._cache.clear()
        if self._changes == changes_before:
            self._cache[account_id] = (time.monotonic(), dict(account))
        return account

    def forget(self, account_id: str) -> None:
        """Drop a cached account (before and after a change to it)."""
        self._changes += 1
        self._cache.pop(account_id, None)

    async def register(
        self,
        *,
        profile: str,
        jwk: dict[str, Any],
        thumbprint: str,
        payload: dict[str, Any],
        require_eab: bool = False,
        url: str = "",
        address: str = "",
    ) -> tuple[dict[str, Any], bool]:
        """RFC 8555 §7.3: the existing account of this key (200) or a new one (201). A new account may
        carry an external account binding (§7.3.4, checked against ``url``); ``require_eab`` demands one.
        ``address`` is the client's (see ``acme_limits.address_key``): past the per-address limit, no new
        account is created (``rateLimited``); finding an existing account is never limited."""
        async with autocommit_reads(self._ctx.engine) as connection:
            existing = await acme.account_by_thumbprint(connection, thumbprint)
        if existing is not None:
            if existing["status"] != "valid":
                raise AcmeError("unauthorized", f"the account of this key is {existing['status']}")
            return existing, False
        if payload.get("onlyReturnExisting") is True:
            raise AcmeError("accountDoesNotExist", "no account exists for this key")
        if self._config.terms_of_service and payload.get("termsOfServiceAgreed") is not True:
            raise AcmeError("userActionRequired", "agree to the terms of service (termsOfServiceAgreed)")
        binding = payload.get("externalAccountBinding")
        if binding is None and require_eab:
            raise AcmeError("externalAccountRequired", "this directory needs an external account binding")
        eab_kid = None
        if binding is not None:
            eab_kid = await self._eab.verify_binding(
                profile=profile, thumbprint=thumbprint, url=url, binding=binding
            )
        now = self._ctx.clock.now()
        account = {
            "id": new_acme_id("acct"),
            "profile": profile,
            "jwk": jwk,
            "jwk_thumbprint": thumbprint,
            "status": "valid",
            "contact": _contacts(payload.get("contact", [])),
            "created_at": now,
            "created_from": address,
        }
        limit = self._config.accounts_per_address_hour
        async with unit_of_work(self._ctx.engine) as uow:
            again = await acme.account_by_thumbprint(uow.connection, thumbprint)
            if again is not None:
                return again, False
            if limit and address:
                count, oldest = await acme.recent_accounts_from(
                    uow.connection, address=address, since=now - RATE_WINDOW
                )
                if count >= limit and oldest is not None:
                    raise account_refused(address, count, oldest, limit, now)
            await acme.insert_account(uow.connection, account)
            if eab_kid is not None:
                await self._eab.bind(uow.connection, kid=eab_kid, account_id=str(account["id"]))
        return account, True

    async def update(self, *, account: dict[str, Any], payload: dict[str, Any] | None) -> dict[str, Any]:
        """RFC 8555 §7.3.2 (contact) and §7.3.6 (``status: deactivated``); POST-as-GET reads."""
        if not payload:
            return account
        changes: dict[str, Any] = {}
        if "contact" in payload:
            changes["contact"] = _contacts(payload["contact"])
        if "status" in payload:
            if payload["status"] != "deactivated":
                raise AcmeError("malformed", "an account's status can only be set to 'deactivated'")
            changes["status"] = "deactivated"
        if changes:
            self.forget(account["id"])
            async with unit_of_work(self._ctx.engine) as uow:
                await acme.update_account(uow.connection, account["id"], changes)
            self.forget(account["id"])
        return account | changes

    async def order_ids(self, *, account: dict[str, Any]) -> list[str]:
        async with autocommit_reads(self._ctx.engine) as connection:
            return await acme.orders_of_account(connection, account["id"], limit=ORDERS_LISTED)


def _contacts(value: Any) -> list[str]:
    """``mailto:`` URLs only, one address each (RFC 8555 §7.3: ``unsupportedContact``/``invalidContact``)."""
    if not isinstance(value, list) or len(value) > MAX_CONTACTS:
        raise AcmeError("malformed", f"contact must be a list of at most {MAX_CONTACTS} URLs")
    contacts: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.startswith("mailto:"):
            raise AcmeError("unsupportedContact", "only mailto: contacts are supported")
        address = item.removeprefix("mailto:")
        if address.count("@") != 1 or "," in address or "?" in address or len(address) > 254:
            raise AcmeError("invalidContact", f"{item!r} is not a single e-mail address")
        contacts.append(item)
    return contacts
