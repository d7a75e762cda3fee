"""Named queries of the ACME server: accounts, orders, authorizations, challenges and spent nonces."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    Integer,
    Select,
    String,
    Update,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.db import Rider, driver_of, read_rows, write_rows
from certctl.store.models import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeOrder,
    AcmeUsedNonce,
    CertificateVersion,
    table_of,
)

ACCOUNTS = table_of(AcmeAccount)
ORDERS = table_of(AcmeOrder)
AUTHORIZATIONS = table_of(AcmeAuthorization)
CHALLENGES = table_of(AcmeChallenge)
USED_NONCES = table_of(AcmeUsedNonce)
VERSIONS = table_of(CertificateVersion)
OPEN_ORDER_STATES = ("pending", "ready")
OWNER = ORDERS.c.account_id.concat(literal_column("''"))
"""An order's account as an expression no index serves, for ownership checks of rows found by another
key (an order, challenge or version id, a name): the condition then filters what the key found. Written
as a plain comparison, the planner may take the (account, created) index instead, before the tables
have statistics (a new deployment, a fast-growing table), and read every order of the account on each
request: measured in the ACME bench, 110 orders read per lookup and 81 authorization probes per order
after 15 s. Counts over an account's recent orders use the column itself."""


_SPEND_MANY = (
    "INSERT INTO acme_used_nonces (nonce, expires_at)"
    " SELECT * FROM unnest(%s::varchar[], %s::timestamptz[])"
    " ON CONFLICT DO NOTHING RETURNING nonce"
)
_SPEND_ONE = (
    sqlite.insert(USED_NONCES)
    .values(nonce=bindparam("nonce"), expires_at=bindparam("expires_at"))
    .on_conflict_do_nothing()
    .returning(USED_NONCES.c.nonce)
)


async def spend_nonces(connection: Any, entries: Sequence[tuple[str, datetime]]) -> set[str]:
    """Record nonces as used; the set of those not used before. On PostgreSQL one statement for the
    whole batch (arrays unnested, so the statement is the same whatever the batch size), sent through
    the driver: every ACME request spends a nonce, and this path costs a fraction of the general one;
    on SQLite, in-process, one prepared insert per nonce in the caller's transaction."""
    if not entries:
        return set()
    driver = await driver_of(connection)
    if driver is not None:
        cursor = await driver.execute(
            _SPEND_MANY, ([nonce for nonce, _ in entries], [expires for _, expires in entries])
        )
        return {str(row[0]) for row in await cursor.fetchall()}
    fresh: set[str] = set()
    for nonce, expires_at in entries:
        result = await connection.execute(_SPEND_ONE, {"nonce": nonce, "expires_at": expires_at})
        fresh.update(str(value) for value in result.scalars())
    return fresh


def spent_nonce_rider(nonce: str, expires_at: datetime, refused: Callable[[], Exception]) -> Rider:
    """The spend of one nonce, carried by the request's first statement (PostgreSQL): a nonce used
    before fails that statement, so the request changes nothing, and ``refused()`` is raised."""
    return Rider(
        name="spent_nonce",
        insert="INSERT INTO acme_used_nonces (nonce, expires_at) VALUES ({0}::VARCHAR, {1}::TIMESTAMPTZ)",
        values=(nonce, expires_at),
        constraint="pk_acme_used_nonces",
        refused=refused,
    )


async def forget_spent_nonces(connection: AsyncConnection, *, now: datetime) -> int:
    result = await connection.execute(delete(USED_NONCES).where(USED_NONCES.c.expires_at < now))
    return int(result.rowcount or 0)


async def _one(connection: AsyncConnection, statement: Any) -> dict[str, Any] | None:
    row = (await connection.execute(statement)).mappings().first()
    return dict(row) if row else None


async def get_account(connection: AsyncConnection, account_id: str) -> dict[str, Any] | None:
    return await _one(connection, select(ACCOUNTS).where(ACCOUNTS.c.id == account_id))


async def account_by_thumbprint(connection: AsyncConnection, thumbprint: str) -> dict[str, Any] | None:
    return await _one(connection, select(ACCOUNTS).where(ACCOUNTS.c.jwk_thumbprint == thumbprint))


async def insert_account(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(ACCOUNTS), values)


async def update_account(connection: AsyncConnection, account_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(**values))


_INSERT_ORDER = insert(ORDERS).values({c.name: bindparam(c.name) for c in ORDERS.columns})
_INSERT_AUTHORIZATION = insert(AUTHORIZATIONS).values(
    {c.name: bindparam(c.name) for c in AUTHORIZATIONS.columns}
)
_INSERT_CHALLENGE = insert(CHALLENGES).values({c.name: bindparam(c.name) for c in CHALLENGES.columns})


@dataclass(frozen=True)
class OrderLimits:
    """What a new order must stay within, counted since ``since`` (0: no such limit): the account's
    orders, the failed validations of each of the order's names by the account, and the orders of every
    account naming each of the order's registered domains."""

    since: datetime
    orders: int = 0
    failures: int = 0
    domains: int = 0

    @property
    def any(self) -> bool:
        return bool(self.orders or self.failures or self.domains)


@dataclass(frozen=True)
class LimitFacts:
    """Why an order was refused: the account's recent orders (count, oldest; None when not counted), the
    recent failed validations per name and the recent orders per registered domain (count, oldest)."""

    orders: tuple[int, datetime | None] | None
    failures: dict[str, tuple[int, datetime]]
    domains: dict[str, tuple[int, datetime]] = field(default_factory=dict)

    def passed(self, limits: OrderLimits) -> tuple[str, str | None, int, datetime] | None:
        """The first limit these facts reach: (``orders``, ``failures`` or ``domains``; the name or
        domain, None for the account's orders; the count; the oldest counted moment), or None within
        every limit."""
        if limits.orders and self.orders is not None:
            count, oldest = self.orders
            if count >= limits.orders and oldest is not None:
                return "orders", None, count, oldest
        for kind, limit, counted in (
            ("failures", limits.failures, self.failures),
            ("domains", limits.domains, self.domains),
        ):
            if limit:
                for value, (count, oldest) in sorted(counted.items()):
                    if count >= limit:
                        return kind, value, count, oldest
        return None


async def insert_order(
    connection: Any,
    *,
    order: dict[str, Any],
    authorizations: Sequence[dict[str, Any]],
    challenges: Sequence[dict[str, Any]],
    limits: OrderLimits | None = None,
) -> LimitFacts | None:
    """An order with its authorizations and their challenges (every column given), atomically, unless
    it would pass ``limits``: then nothing is stored and the facts are returned. On PostgreSQL one
    statement for an order of up to four names, the limits counted inside it (foreign keys are checked
    at its end); else the counts, then three inserts in a transaction (the caller's, or one opened on a
    driver connection)."""
    counted = limits is not None and limits.any
    driver = await driver_of(connection)
    if driver is None or len(authorizations) > SINGLE_STATEMENT_AUTHORIZATIONS:
        async with driver.transaction() if driver is connection else contextlib.nullcontext():
            if counted:
                assert limits is not None
                facts = await _limit_facts(connection, order["account_id"], authorizations, limits)
                if facts.passed(limits) is not None:
                    return facts
            await write_rows(connection, _INSERT_ORDER, [order])
            await write_rows(connection, _INSERT_AUTHORIZATION, authorizations)
            await write_rows(connection, _INSERT_CHALLENGE, challenges)
        return None
    parameters = dict(order)
    for prefix, rows in (("a", authorizations), ("c", challenges)):
        for index, row in enumerate(rows):
            parameters.update({f"{prefix}{index}_{name}": value for name, value in row.items()})
    shape = _LimitShape(
        orders=counted and limits is not None and bool(limits.orders),
        failures=counted and limits is not None and bool(limits.failures and authorizations),
        domains=counted and limits is not None and bool(limits.domains and authorizations),
    )
    if limits is not None and counted:
        parameters |= {
            "since": limits.since,
            "orders_limit": limits.orders,
            "failures_limit": limits.failures,
            "domains_limit": limits.domains,
        }
    statement = _order_insert(len(authorizations), len(challenges), shape)
    (row,) = await read_rows(connection, statement, parameters)
    if row["new_acme_orders"]:
        return None

    def per_value(prefix: str) -> dict[str, tuple[int, datetime]]:
        return {
            str(value): (int(count), oldest)
            for value, count, oldest in zip(
                row.get(f"{prefix}_names") or [],
                row.get(f"{prefix}_counts") or [],
                row.get(f"{prefix}_oldest") or [],
                strict=True,
            )
        }

    return LimitFacts(
        orders=(int(row["recent_orders"]), row["oldest_order"]) if shape.orders else None,
        failures=per_value("failed"),
        domains=per_value("domain"),
    )


async def _limit_facts(
    connection: Any, account_id: str, authorizations: Sequence[dict[str, Any]], limits: OrderLimits
) -> LimitFacts:
    orders = None
    if limits.orders:
        orders = await recent_orders(connection, account_id=account_id, since=limits.since)
    failures: dict[str, tuple[int, datetime]] = {}
    if limits.failures and authorizations:
        values = [a["identifier_value"] for a in authorizations]
        failures = await recent_failures(connection, account_id=account_id, values=values, since=limits.since)
    domains: dict[str, tuple[int, datetime]] = {}
    if limits.domains and authorizations:
        wanted = sorted({a["registered_domain"] for a in authorizations})
        domains = await recent_domain_orders(connection, domains=wanted, since=limits.since)
    return LimitFacts(orders=orders, failures=failures, domains=domains)


@dataclass(frozen=True)
class _LimitShape:
    """Which limits a single-statement order insert counts."""

    orders: bool
    failures: bool
    domains: bool


SINGLE_STATEMENT_AUTHORIZATIONS = 4
"""Orders up to this many names are stored by one statement (one built per shape, so their number stays
small); bigger ones by three in a transaction."""
_ORDER_INSERTS: dict[tuple[int, int, _LimitShape], Select[Any]] = {}


def _order_insert(authorizations: int, challenges: int, limits: _LimitShape) -> Select[Any]:
    """The order, its authorizations and challenges as one statement (data-modifying CTEs), built once
    per shape. With limits, the account's recent orders, its names' recent failed validations and the
    recent orders naming their registered domains are counted in the same statement and the order is
    inserted only within them (its rows are selected from the inserted order, so none is stored without
    it); the counts are returned."""
    key = (authorizations, challenges, limits)
    found = _ORDER_INSERTS.get(key)
    if found is not None:
        return found
    conditions: list[Any] = []
    outputs: list[Any] = []
    since = bindparam("since", type_=ORDERS.c.created_at.type)
    if limits.orders:
        recent = (
            select(func.count().label("n"), func.min(ORDERS.c.created_at).label("oldest"))
            .where(
                ORDERS.c.account_id == bindparam("account_id", type_=ORDERS.c.account_id.type),
                ORDERS.c.created_at > since,
            )
            .cte("recent_orders")
        )
        conditions.append(select(recent.c.n).scalar_subquery() < bindparam("orders_limit", type_=Integer))
        outputs += [
            select(recent.c.n).scalar_subquery().label("recent_orders"),
            select(recent.c.oldest).scalar_subquery().label("oldest_order"),
        ]
    if limits.failures:
        condition, counts = _per_value_limit(
            AUTHORIZATIONS.c.identifier_value,
            func.count(),
            authorizations,
            where=(
                bindparam("account_id", type_=ORDERS.c.account_id.type) == OWNER,
                AUTHORIZATIONS.c.status == "invalid",
                AUTHORIZATIONS.c.created_at > since,
            ),
            join=ORDERS,
            name="failed_validations",
            prefix="failed",
            limit="failures_limit",
        )
        conditions.append(condition)
        outputs += counts
    if limits.domains:
        condition, counts = _per_value_limit(
            AUTHORIZATIONS.c.registered_domain,
            func.count(AUTHORIZATIONS.c.order_id.distinct()),
            authorizations,
            where=(AUTHORIZATIONS.c.created_at > since,),
            name="domain_orders",
            prefix="domain",
            limit="domains_limit",
        )
        conditions.append(condition)
        outputs += counts
    order_values = select(*(bindparam(c.name, type_=c.type) for c in ORDERS.columns))
    if conditions:
        order_values = order_values.where(and_(*conditions))
    new_order = (
        insert(ORDERS)
        .from_select([c.name for c in ORDERS.columns], order_values)
        .returning(ORDERS.c.id)
        .cte("new_acme_orders")
    )
    ctes = [new_order]
    for prefix, table, count in (("a", AUTHORIZATIONS, authorizations), ("c", CHALLENGES, challenges)):
        if count:
            rows = [
                select(
                    *(bindparam(f"{prefix}{i}_{c.name}", type_=c.type) for c in table.columns)
                ).select_from(new_order)
                for i in range(count)
            ]
            source = rows[0] if count == 1 else union_all(*rows)
            step = insert(table).from_select([c.name for c in table.columns], source)
            ctes.append(step.returning(table.c.id).cte(f"new_{table.name}"))
    counts = [select(func.count()).select_from(cte).scalar_subquery().label(cte.name) for cte in ctes]
    found = select(*counts, *outputs)
    _ORDER_INSERTS[key] = found
    return found


def _per_value_limit(
    column: Any,
    count: Any,
    authorizations: int,
    *,
    where: Sequence[Any],
    name: str,
    prefix: str,
    limit: str,
    join: Any = None,
) -> tuple[Any, list[Any]]:
    """A count per value of an authorizations ``column`` among the new order's values of it (bind
    parameters ``a<i>_<column>``): the condition that no value reached the ``limit`` bind parameter, and
    the statement's outputs (``<prefix>_names``, ``_counts`` and ``_oldest`` arrays)."""
    values = [bindparam(f"a{i}_{column.name}", type_=column.type) for i in range(authorizations)]
    query = select(
        column.label("value"), count.label("n"), func.min(AUTHORIZATIONS.c.created_at).label("oldest")
    )
    if join is not None:
        query = query.join(join, join.c.id == AUTHORIZATIONS.c.order_id)
    counted = query.where(column.in_(values), *where).group_by(column).cte(name)
    reached = select(counted.c.value).where(counted.c.n >= bindparam(limit, type_=Integer)).exists()
    outputs = [
        select(func.array_agg(counted.c.value)).scalar_subquery().label(f"{prefix}_names"),
        select(func.array_agg(counted.c.n)).scalar_subquery().label(f"{prefix}_counts"),
        select(func.array_agg(counted.c.oldest)).scalar_subquery().label(f"{prefix}_oldest"),
    ]
    return ~reached, outputs


_ORDER_AND_AUTHORIZATIONS = (
    select(ORDERS, AUTHORIZATIONS.c.id.label("authz_id"))
    .outerjoin(AUTHORIZATIONS, AUTHORIZATIONS.c.order_id == ORDERS.c.id)
    .where(ORDERS.c.id == bindparam("order_id"))
    .order_by(AUTHORIZATIONS.c.identifier_value)
)
_ORDER_COLUMNS = tuple(column.name for column in ORDERS.columns)


async def order_and_authorizations(
    connection: AsyncConnection, order_id: str
) -> tuple[dict[str, Any] | None, list[str]]:
    """An order and the ids of its authorizations (sorted by identifier), in one read."""
    rows = await read_rows(connection, _ORDER_AND_AUTHORIZATIONS, {"order_id": order_id})
    if not rows:
        return None, []
    order = {name: rows[0][name] for name in _ORDER_COLUMNS}
    return order, [str(row["authz_id"]) for row in rows if row["authz_id"] is not None]


_CLAIM_FOR_FINALIZE = (
    update(ORDERS)
    .where(
        ORDERS.c.id == bindparam("order_id"),
        bindparam("owner", type_=String) == OWNER,
        ORDERS.c.status == "ready",
    )
    .values(status="processing", updated_at=bindparam("now"))
    .returning(*ORDERS.columns)
)
_CLAIMED = _CLAIM_FOR_FINALIZE.cte("claimed")
_CLAIM_WITH_AUTHORIZATIONS = (
    select(_CLAIMED, AUTHORIZATIONS.c.id.label("authz_id"))
    .outerjoin(AUTHORIZATIONS, AUTHORIZATIONS.c.order_id == _CLAIMED.c.id)
    .order_by(AUTHORIZATIONS.c.identifier_value)
)
_AUTHORIZATION_IDS = (
    select(AUTHORIZATIONS.c.id.label("authz_id"))
    .where(AUTHORIZATIONS.c.order_id == bindparam("order_id"))
    .order_by(AUTHORIZATIONS.c.identifier_value)
)


async def claim_for_finalize(
    connection: Any, *, order_id: str, account_id: str, now: datetime
) -> tuple[dict[str, Any], list[str]] | None:
    """The account's ready order becomes processing (this finalize owns it): the order as it now is and
    the ids of its authorizations; None when it is not the account's, not ready or taken by another
    finalize. One statement on PostgreSQL; on SQLite the change, then the ids (in-process)."""
    parameters = {"order_id": order_id, "owner": account_id, "now": now}
    if await driver_of(connection) is not None:
        rows = await read_rows(connection, _CLAIM_WITH_AUTHORIZATIONS, parameters)
    else:
        rows = await read_rows(connection, _CLAIM_FOR_FINALIZE, parameters)
        if rows:
            ids = await read_rows(connection, _AUTHORIZATION_IDS, {"order_id": order_id})
            rows = [rows[0] | row for row in ids] or [rows[0] | {"authz_id": None}]
    if not rows:
        return None
    order = {name: rows[0][name] for name in _ORDER_COLUMNS}
    return order, [str(row["authz_id"]) for row in rows if row["authz_id"] is not None]


async def update_order(connection: AsyncConnection, order_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(ORDERS).where(ORDERS.c.id == order_id).values(**values))


async def orders_of_account(connection: AsyncConnection, account_id: str, *, limit: int) -> list[str]:
    statement = (
        select(ORDERS.c.id)
        .where(ORDERS.c.account_id == account_id)
        .order_by(ORDERS.c.created_at.desc())
        .limit(limit)
    )
    return [str(row) for row in (await connection.execute(statement)).scalars()]


_CERTIFICATE_OF_ACCOUNT = (
    select(VERSIONS.c.cert_pem, VERSIONS.c.chain_pem, VERSIONS.c.issuer_ca_id)
    .join(
        ORDERS,
        (ORDERS.c.certificate_id == VERSIONS.c.certificate_id)
        & (bindparam("account_id", type_=String) == OWNER),
    )
    .where(VERSIONS.c.id == bindparam("version_id"))
    .limit(1)
)
"""A join (not EXISTS) on the version's certificate, the account a filter (``OWNER``): the planner
probes the (certificate, account) index by certificate even before the tables have statistics."""


async def certificate_of_account(
    connection: AsyncConnection, *, version_id: str, account_id: str
) -> tuple[str, str, str | None] | None:
    """A certificate version's PEM, chain and issuing CA, if one of the account's orders made its
    certificate."""
    parameters = {"version_id": version_id, "account_id": account_id}
    rows = await read_rows(connection, _CERTIFICATE_OF_ACCOUNT, parameters)
    if not rows:
        return None
    row = rows[0]
    return str(row["cert_pem"]), str(row["chain_pem"] or ""), row["issuer_ca_id"]


async def order_for_certificate(
    connection: AsyncConnection, *, account_id: str, certificate_id: str
) -> dict[str, Any] | None:
    statement = select(ORDERS).where(
        ORDERS.c.account_id == account_id, ORDERS.c.certificate_id == certificate_id
    )
    return await _one(connection, statement.limit(1))


async def update_authorization(connection: AsyncConnection, authz_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(AUTHORIZATIONS).where(AUTHORIZATIONS.c.id == authz_id).values(**values))


_CHALLENGE_COLUMNS = tuple(column.name for column in CHALLENGES.columns)
_AUTHZ_COLUMNS = tuple(column.name for column in AUTHORIZATIONS.columns)
_AUTHORIZATION_WITH_CHALLENGES = (
    select(
        AUTHORIZATIONS,
        ORDERS.c.account_id,
        *(column.label(f"challenge_{column.name}") for column in CHALLENGES.columns),
    )
    .join(ORDERS, ORDERS.c.id == AUTHORIZATIONS.c.order_id)
    .outerjoin(CHALLENGES, CHALLENGES.c.authorization_id == AUTHORIZATIONS.c.id)
    .where(AUTHORIZATIONS.c.id == bindparam("authz_id"))
)


def _in_context_read(challenges: Any) -> Select[Any]:
    """Challenges (the table, or what a statement that changed one returned) with their authorization,
    the account that owns the order and the order's identifiers."""
    return (
        select(
            challenges,
            ORDERS.c.account_id,
            ORDERS.c.identifiers.label("order_identifiers"),
            *(column.label(f"authz_{column.name}") for column in AUTHORIZATIONS.columns),
        )
        .join(AUTHORIZATIONS, AUTHORIZATIONS.c.id == challenges.c.authorization_id)
        .join(ORDERS, ORDERS.c.id == AUTHORIZATIONS.c.order_id)
    )


_CHALLENGE_IN_CONTEXT = _in_context_read(CHALLENGES).where(CHALLENGES.c.id == bindparam("challenge_id"))


_CHALLENGE_AUTHORIZATION = (
    select(CHALLENGES.c.authorization_id)
    .where(CHALLENGES.c.id == bindparam("challenge_id"))
    .scalar_subquery()
)
_OWNED_PENDING_AUTHORIZATION = (
    select(AUTHORIZATIONS.c.id)
    .join(ORDERS, ORDERS.c.id == AUTHORIZATIONS.c.order_id)
    .where(
        AUTHORIZATIONS.c.id == _CHALLENGE_AUTHORIZATION,
        AUTHORIZATIONS.c.status == "pending",
        AUTHORIZATIONS.c.expires_at > bindparam("now"),
        bindparam("owner", type_=String) == OWNER,
    )
    .scalar_subquery()
)
"""The challenge's authorization if it is pending, unexpired and the account's: found by keys (the
challenge's, then the authorization's and the order's), each a value computed once, so no plan starts
from the account's orders."""
_CLAIM_CHALLENGE = (
    update(CHALLENGES)
    .where(
        CHALLENGES.c.id == bindparam("challenge_id"),
        CHALLENGES.c.status == "pending",
        CHALLENGES.c.authorization_id == _OWNED_PENDING_AUTHORIZATION,
    )
    .values(status="processing", updated_at=bindparam("now"))
    .returning(*CHALLENGES.columns)
)
_CLAIMED_CHALLENGE = _CLAIM_CHALLENGE.cte("claimed_challenge")
_CLAIM_CHALLENGE_IN_CONTEXT = _in_context_read(_CLAIMED_CHALLENGE)


async def claim_challenge(
    connection: Any, *, challenge_id: str, account_id: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A pending challenge of the account, whose authorization is pending and unexpired, becomes
    processing (this request starts its validation): the challenge as it now is and its authorization
    (as :func:`challenge_in_context` gives them); None otherwise (the caller reads it to say why). One
    statement on PostgreSQL; on SQLite the change, then the read (in-process)."""
    parameters = {"challenge_id": challenge_id, "owner": account_id, "now": now}
    if await driver_of(connection) is None:
        if not await read_rows(connection, _CLAIM_CHALLENGE, parameters):
            return None
        found = await challenge_in_context(connection, challenge_id)
        return None if found is None else (found[0], found[1])
    rows = await read_rows(connection, _CLAIM_CHALLENGE_IN_CONTEXT, parameters)
    return _in_context(rows[0])[:2] if rows else None


async def authorization_with_challenges(
    connection: AsyncConnection, authz_id: str
) -> tuple[dict[str, Any], str, list[dict[str, Any]]] | None:
    """An authorization, the account that owns its order, and its challenges, in one read."""
    rows = await read_rows(connection, _AUTHORIZATION_WITH_CHALLENGES, {"authz_id": authz_id})
    if not rows:
        return None
    authz = {name: rows[0][name] for name in _AUTHZ_COLUMNS}
    challenges = [
        {name: row[f"challenge_{name}"] for name in _CHALLENGE_COLUMNS}
        for row in rows
        if row["challenge_id"] is not None
    ]
    return authz, str(rows[0]["account_id"]), challenges


async def challenge_in_context(
    connection: AsyncConnection, challenge_id: str
) -> tuple[dict[str, Any], dict[str, Any], str] | None:
    """A challenge, its authorization and the account that owns its order, in one read."""
    rows = await read_rows(connection, _CHALLENGE_IN_CONTEXT, {"challenge_id": challenge_id})
    return _in_context(rows[0]) if rows else None


def _in_context(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    challenge = {name: row[name] for name in _CHALLENGE_COLUMNS}
    authz = {name: row[f"authz_{name}"] for name in _AUTHZ_COLUMNS}
    authz["order_authorizations"] = len(row["order_identifiers"] or ())
    return challenge, authz, str(row["account_id"])


VALIDATION_CONTEXT = (
    select(
        CHALLENGES,
        AUTHORIZATIONS.c.identifier_type,
        AUTHORIZATIONS.c.identifier_value,
        AUTHORIZATIONS.c.wildcard,
        AUTHORIZATIONS.c.order_id,
        ORDERS.c.identifiers.label("order_identifiers"),
        ACCOUNTS.c.jwk_thumbprint,
    )
    .join(AUTHORIZATIONS, AUTHORIZATIONS.c.id == CHALLENGES.c.authorization_id)
    .join(ORDERS, ORDERS.c.id == AUTHORIZATIONS.c.order_id)
    .join(ACCOUNTS, ACCOUNTS.c.id == ORDERS.c.account_id)
    .where(CHALLENGES.c.id == bindparam("challenge_id"))
)


async def validation_context(connection: AsyncConnection, challenge_id: str) -> dict[str, Any] | None:
    """A challenge with what validating it needs (its identifier, its account's key thumbprint, how many
    authorizations its order has), in one read."""
    rows = await read_rows(connection, VALIDATION_CONTEXT, {"challenge_id": challenge_id})
    if not rows:
        return None
    found = rows[0]
    found["order_authorizations"] = len(found.pop("order_identifiers") or ())
    return found


_START_VALIDATION = (
    update(CHALLENGES)
    .where(CHALLENGES.c.id == bindparam("challenge_id"), CHALLENGES.c.status == "pending")
    .values(status="processing", updated_at=bindparam("now"))
)
_START_FINALIZE = (
    update(ORDERS)
    .where(ORDERS.c.id == bindparam("order_id"), ORDERS.c.status == "ready")
    .values(status="processing", updated_at=bindparam("now"))
)


_ORDER_ISSUED_LINKED = (
    update(ORDERS)
    .where(ORDERS.c.id == bindparam("acme_order_id"))
    .values(
        status="valid",
        certificate_id=bindparam("acme_certificate_id"),
        version_id=bindparam("acme_version_id"),
        updated_at=bindparam("acme_now"),
    )
)


def order_issued_linked(
    order_id: str, *, certificate_id: str, version_id: str, now: datetime
) -> tuple[tuple[Update, dict[str, Any]], ...]:
    """The order's change to valid, as a row change committed with its new certificate (the issuance
    service's ``linked``; parameter names apart from the certificate's)."""
    parameters = {
        "acme_order_id": order_id,
        "acme_certificate_id": certificate_id,
        "acme_version_id": version_id,
        "acme_now": now,
    }
    return ((_ORDER_ISSUED_LINKED, parameters),)


async def start_validation(connection: AsyncConnection, challenge_id: str, *, now: datetime) -> bool:
    """A pending challenge becomes processing; False when it was no longer pending."""
    return await write_rows(connection, _START_VALIDATION, [{"challenge_id": challenge_id, "now": now}]) == 1


async def start_finalize(connection: AsyncConnection, order_id: str, *, now: datetime) -> bool:
    """A ready order becomes processing; False when another finalize took it first."""
    return await write_rows(connection, _START_FINALIZE, [{"order_id": order_id, "now": now}]) == 1


_CHALLENGE_OUTCOME = (
    update(CHALLENGES)
    .where(CHALLENGES.c.id == bindparam("challenge_id"), CHALLENGES.c.status == "processing")
    .values(
        status=bindparam("status"),
        error=bindparam("error"),
        validated_at=bindparam("validated_at"),
        updated_at=bindparam("now"),
    )
)
_LOCK_ORDER = (
    update(ORDERS)
    .where(ORDERS.c.id == bindparam("order_id"))
    .values(updated_at=bindparam("now"))
    .returning(ORDERS.c.status)
)
_AUTHZ_OUTCOME = (
    update(AUTHORIZATIONS)
    .where(AUTHORIZATIONS.c.id == bindparam("authz_id"), AUTHORIZATIONS.c.status == "pending")
    .values(status=bindparam("status"))
)
_ORDER_INVALID = (
    update(ORDERS)
    .where(
        ORDERS.c.id == bindparam("order_id"),
        or_(*(ORDERS.c.status == state for state in OPEN_ORDER_STATES)),  # no expanding IN: prebuilt
    )
    .values(status="invalid", updated_at=bindparam("now"))
)
_ORDER_READY = (
    update(ORDERS)
    .where(
        ORDERS.c.id == bindparam("order_id"),
        ORDERS.c.status == "pending",
        ~select(AUTHORIZATIONS.c.id)
        .where(AUTHORIZATIONS.c.order_id == ORDERS.c.id, AUTHORIZATIONS.c.status != "valid")
        .exists(),
    )
    .values(status="ready", updated_at=bindparam("now"))
)


async def record_validation(
    connection: Any,
    *,
    challenge_id: str,
    authz_id: str,
    order_id: str,
    error: dict[str, Any] | None,
    now: datetime,
    alone: bool = False,
) -> bool:
    """Store a finished validation: the challenge, then (if its authorization was still pending) the
    authorization and the order: invalid on failure, ready once every authorization is valid. The order
    row is locked before the authorization changes, so two authorizations of one order validated at
    once cannot both miss that the other is valid. False when the challenge was no longer processing.

    ``alone``: the order has this one authorization; on PostgreSQL the outcome is then one statement
    (on a connection in autocommit mode); otherwise, and on SQLite, four in the caller's transaction."""
    if alone and await driver_of(connection) is not None:
        parameters = {
            "challenge_id": challenge_id,
            "authz_id": authz_id,
            "order_id": order_id,
            "status": "invalid" if error else "valid",
            "order_status": "invalid" if error else "ready",
            "error": error,
            "validated_at": None if error else now,
            "now": now,
        }
        (row,) = await read_rows(connection, _SINGLE_OUTCOME, parameters)
        return bool(row["challenge"])
    status = "invalid" if error else "valid"
    outcome = {
        "challenge_id": challenge_id,
        "status": status,
        "error": error,
        "validated_at": None if error else now,
        "now": now,
    }
    if await write_rows(connection, _CHALLENGE_OUTCOME, [outcome]) != 1:
        return False
    if not await read_rows(connection, _LOCK_ORDER, {"order_id": order_id, "now": now}):
        return True
    if await write_rows(connection, _AUTHZ_OUTCOME, [{"authz_id": authz_id, "status": status}]) != 1:
        return True  # another challenge of the authorization decided it first
    await write_rows(
        connection, _ORDER_INVALID if error else _ORDER_READY, [{"order_id": order_id, "now": now}]
    )
    return True


def _single_outcome() -> Select[Any]:
    """A validation's outcome for an order of one authorization, as one statement (PostgreSQL): the
    challenge, then its authorization if the challenge was still processing, then the order if the
    authorization was still pending. Each step depends on the row the one before it changed, so the
    statement changes all or nothing; with no other authorization to race with, no lock is needed."""
    steps = [_CHALLENGE_OUTCOME.returning(CHALLENGES.c.id).cte("recorded_challenge")]
    for change, name in ((_AUTHZ_OUTCOME, "recorded_authz"), (_ORDER_OUTCOME, "recorded_order")):
        after = change.where(select(steps[-1].c.id).exists()).returning(change.table.c.id)
        steps.append(after.cte(name))
    return select(
        *(
            select(func.count()).select_from(step).scalar_subquery().label(name)
            for step, name in zip(steps, ("challenge", "authz", "order_changed"), strict=True)
        )
    )


_ORDER_OUTCOME = (
    update(ORDERS)
    .where(ORDERS.c.id == bindparam("order_id"), ORDERS.c.status == "pending")
    .values(status=bindparam("order_status"), updated_at=bindparam("now"))
)


_SINGLE_OUTCOME = _single_outcome()


async def stale_processing_challenges(
    connection: AsyncConnection, *, started_before: datetime, limit: int
) -> list[str]:
    """Challenges whose validation began long ago and never ended (its process stopped): to run again."""
    statement = (
        select(CHALLENGES.c.id)
        .where(CHALLENGES.c.status == "processing", CHALLENGES.c.updated_at < started_before)
        .limit(limit)
    )
    return [str(row) for row in (await connection.execute(statement)).scalars()]


async def expire_orders(connection: AsyncConnection, *, now: datetime) -> int:
    """Pending and ready orders past their expiry become invalid, with their open authorizations."""
    expired = select(ORDERS.c.id).where(ORDERS.c.status.in_(OPEN_ORDER_STATES), ORDERS.c.expires_at < now)
    await connection.execute(
        update(AUTHORIZATIONS)
        .where(AUTHORIZATIONS.c.order_id.in_(expired), AUTHORIZATIONS.c.status == "pending")
        .values(status="expired")
    )
    result = await connection.execute(
        update(ORDERS)
        .where(ORDERS.c.status.in_(OPEN_ORDER_STATES), ORDERS.c.expires_at < now)
        .values(status="invalid", updated_at=now)
    )
    return int(result.rowcount or 0)


async def version_by_fingerprint(connection: AsyncConnection, fingerprint: str) -> dict[str, Any] | None:
    """A certificate version by the SHA-256 of its DER (revokeCert and ARI name certificates so)."""
    return await _one(connection, select(VERSIONS).where(VERSIONS.c.fingerprint_sha256 == fingerprint))


async def reusable_authorizations(
    connection: AsyncConnection,
    *,
    account_id: str,
    identifiers: Sequence[tuple[str, str, bool]],
    valid_after: datetime,
    validated_after: datetime,
) -> dict[tuple[str, str, bool], tuple[dict[str, Any], dict[str, Any]]]:
    """Valid authorizations of the account's earlier orders for these (type, value, wildcard)
    identifiers, still valid after ``valid_after`` and proven after ``validated_after``, with the
    challenge that proved each: the newest per identifier."""
    if not identifiers:
        return {}
    a, c, o = AUTHORIZATIONS, CHALLENGES, ORDERS
    values = sorted({value for _, value, _ in identifiers})
    statement = (
        select(a, c.c.id.label("challenge_id"), c.c.type.label("challenge_type"), c.c.token, c.c.validated_at)
        .join(o, o.c.id == a.c.order_id)
        .join(c, c.c.authorization_id == a.c.id)
        .where(
            o.c.account_id == account_id,
            a.c.identifier_value.in_(values),
            a.c.status == "valid",
            a.c.expires_at > valid_after,
            c.c.status == "valid",
            c.c.validated_at > validated_after,
        )
        .order_by(c.c.validated_at.desc())
    )
    wanted = set(identifiers)
    found: dict[tuple[str, str, bool], tuple[dict[str, Any], dict[str, Any]]] = {}
    for row in (await connection.execute(statement)).mappings():
        key = (row["identifier_type"], row["identifier_value"], bool(row["wildcard"]))
        if key in wanted and key not in found:
            challenge = {
                "type": row["challenge_type"],
                "token": row["token"],
                "validated_at": row["validated_at"],
            }
            found[key] = (dict(row), challenge)
    return found


_RECENT_ORDERS = cast(
    "Select[Any]",
    select(func.count().label("orders"), func.min(ORDERS.c.created_at).label("oldest")).where(
        ORDERS.c.account_id == bindparam("account_id"), ORDERS.c.created_at > bindparam("since")
    ),
)
_RECENT_FAILURES = (
    select(AUTHORIZATIONS.c.identifier_value, func.count(), func.min(AUTHORIZATIONS.c.created_at))
    .join(ORDERS, ORDERS.c.id == AUTHORIZATIONS.c.order_id)
    .where(
        bindparam("account_id", type_=String) == OWNER,
        AUTHORIZATIONS.c.identifier_value.in_(bindparam("values", expanding=True)),
        AUTHORIZATIONS.c.status == "invalid",
        AUTHORIZATIONS.c.created_at > bindparam("since"),
    )
    .group_by(AUTHORIZATIONS.c.identifier_value)
)


_RECENT_FAILURES_ANY = (
    select(AUTHORIZATIONS.c.identifier_value, func.count(), func.min(AUTHORIZATIONS.c.created_at))
    .join(ORDERS, ORDERS.c.id == AUTHORIZATIONS.c.order_id)
    .where(
        bindparam("account_id", type_=String) == OWNER,
        AUTHORIZATIONS.c.identifier_value == any_(bindparam("values", type_=ARRAY(String))),
        AUTHORIZATIONS.c.status == "invalid",
        AUTHORIZATIONS.c.created_at > bindparam("since"),
    )
    .group_by(AUTHORIZATIONS.c.identifier_value)
)
"""The same count on PostgreSQL, the names as one array parameter: compiled once, sent by the driver."""


async def recent_orders(connection: Any, *, account_id: str, since: datetime) -> tuple[int, datetime | None]:
    """How many orders the account created since ``since``, and when the oldest of them was created."""
    (row,) = await read_rows(connection, _RECENT_ORDERS, {"account_id": account_id, "since": since})
    return int(row["orders"]), row["oldest"]


async def recent_failures(
    connection: Any, *, account_id: str, values: Sequence[str], since: datetime
) -> dict[str, tuple[int, datetime]]:
    """Invalid authorizations of the account per identifier value since ``since`` (count, oldest)."""
    parameters = {"account_id": account_id, "values": sorted(set(values)), "since": since}
    if await driver_of(connection) is not None:
        found = [tuple(row.values()) for row in await read_rows(connection, _RECENT_FAILURES_ANY, parameters)]
    else:
        found = [tuple(row) for row in (await connection.execute(_RECENT_FAILURES, parameters)).all()]
    return {str(v): (int(n), oldest) for v, n, oldest in found}


def _recent_domain_orders(among: Any) -> Select[Any]:
    return (
        select(
            AUTHORIZATIONS.c.registered_domain,
            func.count(AUTHORIZATIONS.c.order_id.distinct()),
            func.min(AUTHORIZATIONS.c.created_at),
        )
        .where(among, AUTHORIZATIONS.c.created_at > bindparam("since"))
        .group_by(AUTHORIZATIONS.c.registered_domain)
    )


_RECENT_DOMAIN_ORDERS = _recent_domain_orders(
    AUTHORIZATIONS.c.registered_domain.in_(bindparam("domains", expanding=True))
)
_RECENT_DOMAIN_ORDERS_ANY = _recent_domain_orders(
    AUTHORIZATIONS.c.registered_domain == any_(bindparam("domains", type_=ARRAY(String)))
)


async def recent_domain_orders(
    connection: Any, *, domains: Sequence[str], since: datetime
) -> dict[str, tuple[int, datetime]]:
    """Orders of every account naming each registered domain since ``since`` (count, oldest)."""
    parameters = {"domains": sorted(set(domains)), "since": since}
    if await driver_of(connection) is not None:
        rows = await read_rows(connection, _RECENT_DOMAIN_ORDERS_ANY, parameters)
        found = [tuple(row.values()) for row in rows]
    else:
        found = [tuple(row) for row in (await connection.execute(_RECENT_DOMAIN_ORDERS, parameters)).all()]
    return {str(v): (int(n), oldest) for v, n, oldest in found}


async def recent_accounts_from(
    connection: Any, *, address: str, since: datetime
) -> tuple[int, datetime | None]:
    """How many accounts were created from the client address since ``since``, and the oldest's time."""
    statement = select(func.count(), func.min(ACCOUNTS.c.created_at)).where(
        ACCOUNTS.c.created_from == address, ACCOUNTS.c.created_at > since
    )
    count, oldest = (await connection.execute(statement)).one()
    return int(count), oldest
