"""Audit trail storage: append-only rows, hash-chained by a sealer without a global writer lock.

Each row carries ``event_hash`` = SHA-256 over its canonical content when written, in the same
transaction as the change it records. The sealer (one at a time, serialised on the single
``audit_chain_head`` row that only it touches) later assigns ``seq`` and
``chain_hash = SHA-256(previous chain_hash || event_hash)`` in commit order. Writers never wait for one
another; tampering with, inserting or deleting a sealed row breaks the chain (``certctl admin audit verify``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from certctl.store.db import driver_of, prebuilt_insert, write_rows
from certctl.store.models import AuditChainHead, AuditEvent, table_of

EVENTS = table_of(AuditEvent)
HEAD = table_of(AuditChainHead)
GENESIS = "0" * 64
HASHED_FIELDS = (
    "event_id",
    "occurred_at",
    "actor",
    "actor_type",
    "action",
    "resource_type",
    "resource_id",
    "outcome",
    "details",
    "body_sha256",
    "latency_ms",
    "request_id",
)


@dataclass(frozen=True)
class AuditRecord:
    event_id: str
    occurred_at: datetime
    actor: str
    actor_type: str
    action: str
    resource_type: str
    resource_id: str
    outcome: str
    details: dict[str, Any]
    body_sha256: str = ""
    latency_ms: float = 0.0
    request_id: str = ""


def canonical_event_hash(row: dict[str, Any]) -> str:
    payload = {name: row[name] for name in HASHED_FIELDS}
    payload["occurred_at"] = row["occurred_at"].astimezone(UTC).isoformat(timespec="microseconds")
    payload["latency_ms"] = round(float(row["latency_ms"]), 3)
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(encoded).hexdigest()


def chain_step(previous: str, event_hash: str) -> str:
    return hashlib.sha256(bytes.fromhex(previous) + bytes.fromhex(event_hash)).hexdigest()


def record_values(record: AuditRecord) -> dict[str, Any]:
    values = {name: getattr(record, name) for name in HASHED_FIELDS}
    values["latency_ms"] = round(float(record.latency_ms), 3)
    values["event_hash"] = canonical_event_hash(values)
    return values


async def append(connection: Any, records: Sequence[AuditRecord]) -> None:
    if records:
        values = [record_values(r) for r in records]
        await write_rows(connection, prebuilt_insert(EVENTS, values[0].keys()), values)


_SEAL_MANY = (
    "UPDATE audit_events SET seq = sealed.seq, chain_hash = sealed.chain"
    " FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[]) AS sealed(id, seq, chain)"
    " WHERE audit_events.id = sealed.id AND audit_events.seq IS NULL"
)


async def seal_pending(connection: AsyncConnection, *, batch: int = 5000) -> int:
    """Chain every committed, unsealed row. Returns how many were sealed. Call inside a transaction."""
    head_query = select(HEAD.c.seq, HEAD.c.chain_hash).where(HEAD.c.id == 1)
    if connection.dialect.name == "postgresql":
        head_query = head_query.with_for_update()
    head = (await connection.execute(head_query)).one()
    seq, chain = int(head.seq), str(head.chain_hash)
    rows = (
        await connection.execute(
            select(EVENTS.c.id, EVENTS.c.event_hash)
            .where(EVENTS.c.seq.is_(None))
            .order_by(EVENTS.c.id)
            .limit(batch)
        )
    ).all()
    sealed = []
    for row in rows:
        seq += 1
        chain = chain_step(chain, row.event_hash)
        sealed.append({"row_id": row.id, "new_seq": seq, "new_chain": chain})
    if sealed:
        driver = await driver_of(connection)
        if driver is not None:  # the whole batch as one statement (arrays unnested), in this transaction
            columns = (
                [s["row_id"] for s in sealed],
                [s["new_seq"] for s in sealed],
                [s["new_chain"] for s in sealed],
            )
            await driver.execute(_SEAL_MANY, columns)
        else:
            statement = (
                update(EVENTS)
                .where(EVENTS.c.id == bindparam("row_id"), EVENTS.c.seq.is_(None))
                .values(seq=bindparam("new_seq"), chain_hash=bindparam("new_chain"))
            )
            await connection.execute(statement, sealed)
        await connection.execute(update(HEAD).where(HEAD.c.id == 1).values(seq=seq, chain_hash=chain))
    return len(rows)


@dataclass(frozen=True)
class VerifyReport:
    sealed: int
    unsealed: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(connection: AsyncConnection) -> VerifyReport:
    """Recompute every row hash and the whole chain; report the first problems found."""
    problems: list[str] = []
    expected_seq, chain, sealed, unsealed = 0, GENESIS, 0, 0
    result = await connection.stream(
        select(EVENTS).order_by(EVENTS.c.seq.is_(None), EVENTS.c.seq, EVENTS.c.id)
    )
    async for row in result.mappings():
        data = dict(row)
        if canonical_event_hash(data) != data["event_hash"]:
            problems.append(f"event {data['event_id']}: content does not match its hash (row altered)")
        if data["seq"] is None:
            unsealed += 1
            continue
        sealed += 1
        expected_seq += 1
        if data["seq"] != expected_seq:
            problems.append(f"chain position {expected_seq} is missing (a sealed row was deleted)")
            expected_seq = int(data["seq"])
        chain = chain_step(chain, data["event_hash"])
        if chain != data["chain_hash"]:
            problems.append(f"event {data['event_id']}: chain hash mismatch at position {data['seq']}")
            chain = str(data["chain_hash"])
        if len(problems) >= 20:
            break
    head = (await connection.execute(select(HEAD.c.seq, HEAD.c.chain_hash).where(HEAD.c.id == 1))).first()
    if head is not None and not problems and (int(head.seq) != expected_seq or head.chain_hash != chain):
        problems.append("the chain head does not match the last sealed row (rows removed from the end)")
    return VerifyReport(sealed=sealed, unsealed=unsealed, problems=tuple(problems))


@dataclass(frozen=True)
class AuditQuery:
    action: str | None = None
    actor: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_id: int | None = None
    limit: int = 100


async def list_events(connection: AsyncConnection, query: AuditQuery) -> list[dict[str, Any]]:
    statement = select(EVENTS)
    if query.action:
        statement = statement.where(EVENTS.c.action == query.action)
    if query.actor:
        statement = statement.where(EVENTS.c.actor == query.actor)
    if query.resource_type:
        statement = statement.where(EVENTS.c.resource_type == query.resource_type)
    if query.resource_id:
        statement = statement.where(EVENTS.c.resource_id == query.resource_id)
    if query.since:
        statement = statement.where(EVENTS.c.occurred_at >= query.since)
    if query.until:
        statement = statement.where(EVENTS.c.occurred_at < query.until)
    if query.after_id is not None:
        statement = statement.where(EVENTS.c.id < query.after_id)
    statement = statement.order_by(EVENTS.c.id.desc()).limit(query.limit)
    return [dict(row) for row in (await connection.execute(statement)).mappings()]


async def stream_events(connection: AsyncConnection, query: AuditQuery) -> AsyncIterator[dict[str, Any]]:
    statement = select(EVENTS).order_by(EVENTS.c.id)
    if query.since:
        statement = statement.where(EVENTS.c.occurred_at >= query.since)
    if query.until:
        statement = statement.where(EVENTS.c.occurred_at < query.until)
    if query.action:
        statement = statement.where(EVENTS.c.action == query.action)
    result = await connection.stream(statement)
    async for row in result.mappings():
        yield dict(row)


async def count(connection: AsyncConnection) -> int:
    return int((await connection.execute(select(func.count()).select_from(EVENTS))).scalar_one())
