"""Storing new certificates through the group committer, and the stored version's public view."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Update

from certctl.errors import Conflict
from certctl.store.db import driver_of, write_rows
from certctl.store.repositories import audit, certificates
from certctl.store.repositories.audit import AuditRecord, record_values

Linked = tuple[Update, dict[str, Any]]
"""A row change committed with a new certificate, only if the certificate is stored: a prebuilt update
and its parameters (named apart from the columns it sets, e.g. with a prefix)."""


@dataclass(frozen=True)
class NewCertificate:
    certificate: dict[str, Any]
    version: dict[str, Any]
    event: AuditRecord
    linked: tuple[Linked, ...] = ()


async def store_new_certificates(
    connection: Any, batch: Sequence[NewCertificate]
) -> list[BaseException | None]:
    """One transaction for a whole batch: certificates (duplicate names refused one by one), their
    versions and their audit rows. A batch of one is one statement on PostgreSQL (atomic alone: the
    committer opens no transaction for it)."""
    if len(batch) == 1 and await driver_of(connection) is not None:
        (item,) = batch
        alone = await certificates.store_one(
            connection,
            certificate=item.certificate,
            version=item.version,
            event=record_values(item.event),
            linked=item.linked,
        )
        return [None if alone else _taken(item)]
    inserted = await certificates.insert_certificates_skipping_taken_names(
        connection, [item.certificate for item in batch]
    )
    stored = [item for item in batch if item.certificate["id"] in inserted]
    await certificates.insert_versions(connection, [item.version for item in stored])
    await audit.append(connection, [item.event for item in stored])
    linked: dict[int, tuple[Update, list[dict[str, Any]]]] = {}
    for item in stored:  # each linked statement once for the whole batch (one round trip, pipelined)
        for statement, parameters in item.linked:
            linked.setdefault(id(statement), (statement, []))[1].append(parameters)
    for statement, rows in linked.values():
        await write_rows(connection, statement, rows)
    return [None if item.certificate["id"] in inserted else _taken(item) for item in batch]


def _taken(item: NewCertificate) -> Conflict:
    return Conflict(f"a certificate named {item.certificate['name']!r} already exists")


def version_key_aad(version_id: str) -> bytes:
    return f"version-key:{version_id}".encode()


def public_version(version: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in version.items() if k != "key_sealed"} | {
        "has_key": version["key_sealed"] is not None
    }
