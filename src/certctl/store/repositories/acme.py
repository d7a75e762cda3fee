"""Named queries of the ACME server: accounts, orders, authorizations, challenges and spent nonces."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

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


async def spend_nonces(connection: AsyncConnection, entries: Sequence[tuple[str, datetime]]) -> set[str]:
    """Record many nonces as used in one statement; the set of those not used before."""
    values = [{"nonce": nonce, "expires_at": expires_at} for nonce, expires_at in entries]
    if not values:
        return set()
    if connection.dialect.name == "postgresql":
        statement: Any = postgresql.insert(USED_NONCES).values(values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(USED_NONCES).values(values).on_conflict_do_nothing()
    result = await connection.execute(statement.returning(USED_NONCES.c.nonce))
    return {str(nonce) for nonce in result.scalars()}


async def forget_spent_nonces(connection: AsyncConnection, *, now: datetime) -> int:
    result = await connection.execute(delete(USED_NONCES).where(USED_NONCES.c.expires_at < now))
    return int(result.rowcount or 0)


async def _one(connection: AsyncConnection, statement: Any) -> dict[str, Any] | None:
    row = (await connection.execute(statement)).mappings().first()
    return dict(row) if row else None


async def _all(connection: AsyncConnection, statement: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def get_account(connection: AsyncConnection, account_id: str) -> dict[str, Any] | None:
    return await _one(connection, select(ACCOUNTS).where(ACCOUNTS.c.id == account_id))


async def account_by_thumbprint(connection: AsyncConnection, thumbprint: str) -> dict[str, Any] | None:
    return await _one(connection, select(ACCOUNTS).where(ACCOUNTS.c.jwk_thumbprint == thumbprint))


async def insert_account(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(ACCOUNTS), values)


async def update_account(connection: AsyncConnection, account_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(ACCOUNTS).where(ACCOUNTS.c.id == account_id).values(**values))


async def insert_order(
    connection: AsyncConnection,
    *,
    order: dict[str, Any],
    authorizations: Sequence[dict[str, Any]],
    challenges: Sequence[dict[str, Any]],
) -> None:
    await connection.execute(insert(ORDERS), order)
    await connection.execute(insert(AUTHORIZATIONS), list(authorizations))
    if challenges:
        await connection.execute(insert(CHALLENGES), list(challenges))


async def get_order(connection: AsyncConnection, order_id: str) -> dict[str, Any] | None:
    return await _one(connection, select(ORDERS).where(ORDERS.c.id == order_id))


async def update_order(connection: AsyncConnection, order_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(ORDERS).where(ORDERS.c.id == order_id).values(**values))


async def swap_order_status(
    connection: AsyncConnection, order_id: str, *, expected: str, values: dict[str, Any]
) -> bool:
    """Change an order only while it is still in ``expected`` (two finalize calls cannot both win)."""
    result = await connection.execute(
        update(ORDERS).where(ORDERS.c.id == order_id, ORDERS.c.status == expected).values(**values)
    )
    return bool(result.rowcount == 1)


async def orders_of_account(connection: AsyncConnection, account_id: str, *, limit: int) -> list[str]:
    statement = (
        select(ORDERS.c.id)
        .where(ORDERS.c.account_id == account_id)
        .order_by(ORDERS.c.created_at.desc())
        .limit(limit)
    )
    return [str(row) for row in (await connection.execute(statement)).scalars()]


async def order_for_certificate(
    connection: AsyncConnection, *, account_id: str, certificate_id: str
) -> dict[str, Any] | None:
    statement = select(ORDERS).where(
        ORDERS.c.account_id == account_id, ORDERS.c.certificate_id == certificate_id
    )
    return await _one(connection, statement.limit(1))


async def authorizations_of(connection: AsyncConnection, order_id: str) -> list[dict[str, Any]]:
    statement = select(AUTHORIZATIONS).where(AUTHORIZATIONS.c.order_id == order_id)
    return await _all(connection, statement.order_by(AUTHORIZATIONS.c.identifier_value))


async def get_authorization(connection: AsyncConnection, authz_id: str) -> dict[str, Any] | None:
    return await _one(connection, select(AUTHORIZATIONS).where(AUTHORIZATIONS.c.id == authz_id))


async def update_authorization(connection: AsyncConnection, authz_id: str, values: dict[str, Any]) -> None:
    await connection.execute(update(AUTHORIZATIONS).where(AUTHORIZATIONS.c.id == authz_id).values(**values))


async def challenges_of(connection: AsyncConnection, authz_id: str) -> list[dict[str, Any]]:
    statement = select(CHALLENGES).where(CHALLENGES.c.authorization_id == authz_id)
    return await _all(connection, statement.order_by(CHALLENGES.c.type))


async def get_challenge(connection: AsyncConnection, challenge_id: str) -> dict[str, Any] | None:
    return await _one(connection, select(CHALLENGES).where(CHALLENGES.c.id == challenge_id))


VALIDATION_CONTEXT = (
    select(
        CHALLENGES,
        AUTHORIZATIONS.c.identifier_type,
        AUTHORIZATIONS.c.identifier_value,
        AUTHORIZATIONS.c.wildcard,
        ACCOUNTS.c.jwk_thumbprint,
    )
    .join(AUTHORIZATIONS, AUTHORIZATIONS.c.id == CHALLENGES.c.authorization_id)
    .join(ORDERS, ORDERS.c.id == AUTHORIZATIONS.c.order_id)
    .join(ACCOUNTS, ACCOUNTS.c.id == ORDERS.c.account_id)
    .where(CHALLENGES.c.id == bindparam("challenge_id"))
)


async def validation_context(connection: AsyncConnection, challenge_id: str) -> dict[str, Any] | None:
    """A challenge with what validating it needs (its identifier and its account's key thumbprint), in
    one read."""
    return await _one(connection, VALIDATION_CONTEXT.params(challenge_id=challenge_id))


async def swap_challenge_status(
    connection: AsyncConnection, challenge_id: str, *, expected: str, values: dict[str, Any]
) -> bool:
    result = await connection.execute(
        update(CHALLENGES)
        .where(CHALLENGES.c.id == challenge_id, CHALLENGES.c.status == expected)
        .values(**values)
    )
    return bool(result.rowcount == 1)


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


async def recent_orders(
    connection: AsyncConnection, *, account_id: str, since: datetime
) -> tuple[int, datetime | None]:
    """How many orders the account created since ``since``, and when the oldest of them was created."""
    statement = select(func.count(), func.min(ORDERS.c.created_at)).where(
        ORDERS.c.account_id == account_id, ORDERS.c.created_at > since
    )
    count, oldest = (await connection.execute(statement)).one()
    return int(count), oldest


async def recent_failures(
    connection: AsyncConnection, *, account_id: str, values: Sequence[str], since: datetime
) -> dict[str, tuple[int, datetime]]:
    """Invalid authorizations of the account per identifier value since ``since`` (count, oldest)."""
    a, o = AUTHORIZATIONS, ORDERS
    statement = (
        select(a.c.identifier_value, func.count(), func.min(a.c.created_at))
        .join(o, o.c.id == a.c.order_id)
        .where(
            o.c.account_id == account_id,
            a.c.identifier_value.in_(sorted(set(values))),
            a.c.status == "invalid",
            a.c.created_at > since,
        )
        .group_by(a.c.identifier_value)
    )
    return {str(v): (int(n), oldest) for v, n, oldest in (await connection.execute(statement)).all()}
