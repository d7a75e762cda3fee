"""Managed certificates and their versions: named queries over Core tables."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.domain.rbac import ScopeFilter
from certctl.errors import ValidationFailed
from certctl.store.db import (
    driver_of,
    insert_values,
    prebuilt_insert,
    read_rows,
    read_rows_many,
    write_rows,
)
from certctl.store.models import AuditEvent, CertificateVersion, ManagedCertificate, table_of

CERTS = table_of(ManagedCertificate)
VERSIONS = table_of(CertificateVersion)
EVENTS = table_of(AuditEvent)
SORTABLE = ("name", "not_after", "created_at", "status", "common_name", "updated_at")


@dataclass(frozen=True)
class CertificateQuery:
    status: Sequence[str] = ()
    issuer_id: str | None = None
    profile_id: str | None = None
    owner_id: str | None = None
    team_id: str | None = None
    environment: str | None = None
    source: str | None = None
    search: str | None = None
    expires_before: datetime | None = None
    expires_after: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)
    include_archived: bool = False
    sort: str = "name"
    descending: bool = False
    cursor: str | None = None
    limit: int = 50
    scope: ScopeFilter | None = None
    """Rows the caller may see (scoped grants); None means no restriction."""


def scope_condition(scope: ScopeFilter | None) -> ColumnElement[bool] | None:
    """SQL for "under one of these profiles or issuers"; None when the scope is everything."""
    if scope is None or scope.everything:
        return None
    return or_(
        CERTS.c.profile_id.in_(sorted(scope.profile_ids)),
        CERTS.c.issuer_id.in_(sorted(scope.issuer_ids)),
    )


def encode_cursor(sort_value: Any, row_id: str) -> str:
    value = sort_value.isoformat() if isinstance(sort_value, datetime) else sort_value
    raw = json.dumps([value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, row_id = json.loads(raw)
        if not isinstance(row_id, str):
            raise TypeError
        if sort in ("not_after", "created_at", "updated_at") and value is not None:
            value = datetime.fromisoformat(value)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValidationFailed("the cursor is not valid; start again without it") from exc
    return value, row_id


def _filters(query: CertificateQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.status:
        conditions.append(CERTS.c.status.in_(list(query.status)))
    elif not query.include_archived:
        conditions.append(CERTS.c.status != "Archived")
    for column, value in (
        (CERTS.c.issuer_id, query.issuer_id),
        (CERTS.c.profile_id, query.profile_id),
        (CERTS.c.owner_id, query.owner_id),
        (CERTS.c.team_id, query.team_id),
        (CERTS.c.environment, query.environment),
        (CERTS.c.source, query.source),
    ):
        if value is not None:
            conditions.append(column == value)
    if query.search:
        pattern = f"%{query.search.lower()}%"
        conditions.append(
            or_(func.lower(CERTS.c.name).like(pattern), func.lower(CERTS.c.common_name).like(pattern))
        )
    if query.expires_before is not None:
        conditions.append(CERTS.c.not_after < query.expires_before)
    if query.expires_after is not None:
        conditions.append(CERTS.c.not_after >= query.expires_after)
    scoped = scope_condition(query.scope)
    if scoped is not None:
        conditions.append(scoped)
    return conditions


async def list_certificates(
    connection: AsyncConnection, query: CertificateQuery
) -> tuple[list[dict[str, Any]], str | None]:
    """One page, plus the cursor of the next page (None at the end). Tags are filtered in SQL-neutral
    Python after the page is read only when requested, so over-fetch in that case."""
    if query.sort not in SORTABLE:
        raise ValidationFailed(f"cannot sort by {query.sort!r}; choose one of {', '.join(SORTABLE)}")
    sort_column = CERTS.c[query.sort]
    conditions = _filters(query)
    if query.cursor:
        value, row_id = decode_cursor(query.cursor, query.sort)
        if query.descending:
            conditions.append(or_(sort_column < value, and_(sort_column == value, CERTS.c.id < row_id)))
        else:
            conditions.append(or_(sort_column > value, and_(sort_column == value, CERTS.c.id > row_id)))
    order = (sort_column.desc(), CERTS.c.id.desc()) if query.descending else (sort_column, CERTS.c.id)
    statement = select(CERTS).where(*conditions).order_by(*order)
    rows: list[dict[str, Any]] = []
    fetch = query.limit + 1
    if not query.tags:
        statement = statement.limit(fetch)
    result = await connection.stream(statement)
    async for row in result.mappings():
        record = dict(row)
        tags = record.get("tags") or {}
        if all(tags.get(k) == v for k, v in query.tags.items()):
            rows.append(record)
            if len(rows) >= fetch:
                break
    await result.close()
    next_cursor = None
    if len(rows) > query.limit:
        rows = rows[: query.limit]
        last = rows[-1]
        next_cursor = encode_cursor(last[query.sort], last["id"])
    return rows, next_cursor


async def get(connection: AsyncConnection, certificate_id: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(CERTS).where(CERTS.c.id == certificate_id))).mappings().first()
    return dict(row) if row else None


async def get_by_name(connection: AsyncConnection, name: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(CERTS).where(CERTS.c.name == name))).mappings().first()
    return dict(row) if row else None


async def name_exists(connection: AsyncConnection, name: str) -> bool:
    found = await connection.execute(select(CERTS.c.id).where(CERTS.c.name == name).limit(1))
    return found.first() is not None


async def insert_certificate(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(CERTS), values)


async def update_certificate(
    connection: AsyncConnection, certificate_id: str, values: dict[str, Any]
) -> None:
    await connection.execute(update(CERTS).where(CERTS.c.id == certificate_id).values(**values))


async def insert_version(connection: AsyncConnection, values: dict[str, Any]) -> None:
    await connection.execute(insert(VERSIONS), values)


async def versions_of(connection: AsyncConnection, certificate_id: str) -> list[dict[str, Any]]:
    statement = (
        select(VERSIONS)
        .where(VERSIONS.c.certificate_id == certificate_id)
        .order_by(VERSIONS.c.created_at.desc(), VERSIONS.c.id.desc())
    )
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def get_version(connection: AsyncConnection, version_id: str) -> dict[str, Any] | None:
    row = (await connection.execute(select(VERSIONS).where(VERSIONS.c.id == version_id))).mappings().first()
    return dict(row) if row else None


async def count_by_status(connection: AsyncConnection, scope: ScopeFilter | None = None) -> dict[str, int]:
    statement = select(CERTS.c.status, func.count()).group_by(CERTS.c.status)
    scoped = scope_condition(scope)
    if scoped is not None:
        statement = statement.where(scoped)
    return {str(status): int(n) for status, n in (await connection.execute(statement)).all()}


async def expiry_histogram(
    connection: AsyncConnection, *, now: datetime, until: datetime, scope: ScopeFilter | None = None
) -> list[datetime]:
    """notAfter of every live certificate expiring between now and until (for the dashboard timeline)."""
    statement = select(CERTS.c.not_after).where(
        CERTS.c.not_after.is_not(None),
        CERTS.c.not_after >= now,
        CERTS.c.not_after < until,
        CERTS.c.status.not_in(["Archived", "Revoked"]),
    )
    scoped = scope_condition(scope)
    if scoped is not None:
        statement = statement.where(scoped)
    return [row[0] for row in (await connection.execute(statement)).all()]


async def refresh_statuses(connection: AsyncConnection, *, now: datetime, expiring_from: datetime) -> int:
    """Move Active -> Expiring -> Expired by the current version's notAfter (indexed, set-based); see
    ``domain.lifecycle.status_for_validity`` for what Expiring means."""
    expired = await connection.execute(
        update(CERTS)
        .where(CERTS.c.status.in_(["Active", "Expiring"]), CERTS.c.not_after <= now)
        .values(status="Expired", updated_at=now)
    )
    expiring = await connection.execute(
        update(CERTS)
        .where(
            CERTS.c.status == "Active",
            CERTS.c.not_after > now,
            CERTS.c.not_after <= expiring_from,
            or_(CERTS.c.renewal_due_at.is_(None), CERTS.c.renewal_due_at <= now),
        )
        .values(status="Expiring", updated_at=now)
    )
    return int(expired.rowcount or 0) + int(expiring.rowcount or 0)


async def mark_revoked(
    connection: AsyncConnection, certificate_id: str, *, at: datetime, reason: str
) -> None:
    """Record a revocation on the certificate and its current version."""
    row = await get(connection, certificate_id)
    if row is None:
        return
    await update_certificate(
        connection, certificate_id, {"status": "Revoked", "auto_renew": False, "updated_at": at}
    )
    if row["current_version_id"]:
        await connection.execute(
            update(VERSIONS)
            .where(VERSIONS.c.id == row["current_version_id"])
            .values(revoked_at=at, revocation_reason=reason)
        )


async def insert_certificates_skipping_taken_names(
    connection: Any, records: Sequence[dict[str, Any]]
) -> set[str]:
    """Insert many managed certificates; a name already taken (by an existing row or an earlier row of
    the same batch) is skipped instead of failing the batch. Returns the inserted ids. On PostgreSQL
    one prebuilt statement per row through the driver, the rows pipelined (one round trip), on SQLite one
    statement for the batch."""
    if await driver_of(connection) is not None:
        runs: list[tuple[frozenset[str], list[Mapping[str, Any]]]] = []
        for record in records:  # consecutive rows of the same columns go in one pipelined run, in order
            if runs and runs[-1][0] == frozenset(record):
                runs[-1][1].append(record)
            else:
                runs.append((frozenset(record), [record]))
        inserted: set[str] = set()
        for keys, same in runs:
            for rows in await read_rows_many(connection, _skipping_taken_name(keys), same):
                inserted.update(str(row["id"]) for row in rows)
        return inserted
    statement = sqlite_insert(CERTS).on_conflict_do_nothing(index_elements=["name"]).returning(CERTS.c.id)
    result = await connection.execute(statement, list(records))
    return {str(row.id) for row in result}


_SKIPPING: dict[frozenset[str], Any] = {}


def _skipping_taken_name(keys: Iterable[str]) -> Any:
    given = frozenset(keys)
    found = _SKIPPING.get(given)
    if found is None:
        statement = postgresql_insert(CERTS).values(insert_values(CERTS, given))
        found = _SKIPPING[given] = statement.on_conflict_do_nothing(index_elements=["name"]).returning(
            CERTS.c.id
        )
    return found


_STORE_ONE: dict[tuple[frozenset[str], frozenset[str], frozenset[str], tuple[int, ...]], Any] = {}


def _store_one_statement(
    certificate: Iterable[str], version: Iterable[str], event: Iterable[str], linked: Sequence[Any] = ()
) -> Any:
    """A certificate (skipped if its name is taken), then its version, its audit row and the linked
    updates only if the certificate went in: data-modifying CTEs, built once per key set (and linked
    statement)."""
    shape = (frozenset(certificate), frozenset(version), frozenset(event), tuple(id(u) for u in linked))
    found = _STORE_ONE.get(shape)
    if found is None:
        stored = (
            postgresql_insert(CERTS)
            .values(insert_values(CERTS, shape[0], prefix="c_"))
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(CERTS.c.id)
            .cte("stored_certificate")
        )
        steps = []
        for table, keys, prefix in ((VERSIONS, shape[1], "v_"), (EVENTS, shape[2], "e_")):
            values = insert_values(table, keys, prefix=prefix)
            rows = select(*values.values()).where(select(stored.c.id).exists())
            step = insert(table).from_select(list(values), rows).returning(table.c.id)
            steps.append(step.cte(f"stored_{table.name}"))
        for index, change in enumerate(linked):
            key = next(iter(change.table.primary_key.columns))
            guarded = change.where(select(stored.c.id).exists()).returning(key)
            steps.append(guarded.cte(f"stored_linked_{index}"))
        found = select(
            stored.c.id,
            *(select(func.count()).select_from(step).scalar_subquery() for step in steps),
        )
        _STORE_ONE[shape] = found
    return found


async def store_one(
    connection: Any,
    *,
    certificate: dict[str, Any],
    version: dict[str, Any],
    event: dict[str, Any],
    linked: Sequence[tuple[Any, dict[str, Any]]] = (),
) -> bool:
    """One new certificate with its version, audit row and linked updates, atomically, as one statement
    (PostgreSQL driver path); False when its name is taken (nothing stored)."""
    parameters = (
        {f"c_{k}": v for k, v in certificate.items()}
        | {f"v_{k}": v for k, v in version.items()}
        | {f"e_{k}": v for k, v in event.items()}
    )
    for _, values in linked:
        parameters |= values
    statement = _store_one_statement(
        certificate.keys(), version.keys(), event.keys(), [change for change, _ in linked]
    )
    return bool(await read_rows(connection, statement, parameters))


async def insert_versions(connection: Any, records: Sequence[dict[str, Any]]) -> None:
    if records:
        await write_rows(connection, prebuilt_insert(VERSIONS, records[0].keys()), records)
