"""ACME rate limits (RFC 8555 §6.6): what they count and how a refusal reads.

Four limits, each over a rolling hour and counted from the database (so they hold across replicas):
new orders per account, failed validations of one name per account, new orders naming one registered
domain across every account, and new accounts per client address. A refusal is ``rateLimited`` (429)
with ``Retry-After``: the seconds until the oldest counted event leaves the window.

A registered domain is the name's public suffix (Public Suffix List, ICANN and private sections) plus
one label: ``a.b.example.co.uk`` counts as ``example.co.uk``, ``svc.corp.internal`` as ``corp.internal``
(an unlisted top-level label is a suffix of its own, the list's default rule). A name that is itself a
public suffix counts as itself, an IP address as itself. A client address is the connection's peer
address; an IPv6 address counts as its /64, since one host usually holds a whole /64.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING

from certctl.services.acme_errors import AcmeError
from certctl.store.repositories import acme

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

RATE_WINDOW = timedelta(hours=1)


@cache
def _suffixes() -> PublicSuffixList:
    """The Public Suffix List shipped with the package, read once per process (about 40 ms)."""
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registered_domain(identifier_type: str, value: str) -> str:
    """The registered domain an identifier counts against (a wildcard counts as its base name)."""
    if identifier_type != "dns":
        return value
    name = value.removeprefix("*.")
    found = _suffixes().privatesuffix(name)
    return found if isinstance(found, str) and found else name


def address_key(host: str | None) -> str:
    """What the per-address limit counts a client address as: an IPv4 address as itself (also when
    IPv4-mapped), an IPv6 address as its /64; empty when the peer is not an IP address (a Unix socket,
    a test transport): such requests are not counted."""
    if not host:
        return ""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, int((moment - now).total_seconds()) + 1)


def order_refused(facts: acme.LimitFacts, limits: acme.OrderLimits, now: datetime) -> AcmeError:
    """``rateLimited`` for an order past one of its limits: the account's orders, a name's failed
    validations (counted only for orders whose names are validated: a trusted order has none to fail),
    or the orders naming a registered domain."""
    passed = facts.passed(limits)
    if passed is None:
        raise AssertionError("an order refused within its limits")
    kind, name, count, oldest = passed
    if kind == "orders":
        detail = f"this account created {count} orders in the last hour (limit {limits.orders})"
    elif kind == "failures":
        detail = f"{name}: {count} failed validations in the last hour (limit {limits.failures})"
    else:
        detail = (
            f"{name}: {count} orders named this registered domain in the last hour (limit {limits.domains})"
        )
    return AcmeError("rateLimited", detail, retry_after=seconds_until(oldest + RATE_WINDOW, now))


def account_refused(address: str, count: int, oldest: datetime, limit: int, now: datetime) -> AcmeError:
    """``rateLimited`` for a new account from an address that created ``limit`` accounts this hour."""
    detail = f"{count} accounts were created from {address} in the last hour (limit {limit})"
    return AcmeError("rateLimited", detail, retry_after=seconds_until(oldest + RATE_WINDOW, now))
