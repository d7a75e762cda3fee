"""The facts the policy engine judges, gathered from an issuance request or from a stored certificate.

Issue and renew build them from what they are about to sign (so every door that issues, REST API, ACME,
SCEP or EST, is judged on the same facts); the violations view builds them from the inventory.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol

from certctl.domain.policy import IssuanceFacts


class _KeyInfo(Protocol):
    @property
    def algorithm(self) -> str: ...
    @property
    def size(self) -> int: ...


class SubjectShape(Protocol):
    """The names and key about to be certified (the issuance service's checked subject)."""

    @property
    def common_name(self) -> str | None: ...
    @property
    def dns_names(self) -> tuple[str, ...]: ...
    @property
    def ip_addresses(self) -> tuple[str, ...]: ...
    @property
    def key_info(self) -> _KeyInfo: ...


class RequestShape(Protocol):
    """The metadata of an issuance request (the issuance service's ``IssueRequest``)."""

    @property
    def name(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def owner_id(self) -> str | None: ...
    @property
    def team_id(self) -> str | None: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def source(self) -> str: ...


def policy_facts(
    request: RequestShape,
    subject: SubjectShape,
    validity: timedelta,
    issuer: Mapping[str, Any],
    profile: Mapping[str, Any],
    *,
    record: Mapping[str, Any] | None = None,
) -> IssuanceFacts:
    """Facts of a request about to be signed. For a renewal, ``record`` (the managed certificate row)
    supplies the metadata, since the renewal request carries only names and key."""
    metadata: Mapping[str, Any] = record or {
        "name": request.name,
        "environment": request.environment,
        "owner_id": request.owner_id,
        "team_id": request.team_id,
        "tags": request.tags,
        "source": request.source,
    }
    return IssuanceFacts(
        dns_names=subject.dns_names,
        ip_addresses=subject.ip_addresses,
        common_name=subject.common_name,
        key_algorithm=subject.key_info.algorithm,
        key_size=subject.key_info.size,
        validity=validity,
        issuer_id=str(issuer["id"]),
        issuer_name=str(issuer["name"]),
        profile_id=str(profile["id"]),
        profile_name=str(profile["name"]),
        environment=str(metadata.get("environment") or ""),
        owner_id=metadata.get("owner_id"),
        team_id=metadata.get("team_id"),
        tags=dict(metadata.get("tags") or {}),
        source=str(metadata.get("source") or "api"),
        name=str(metadata.get("name") or ""),
        certificate_id=record["id"] if record is not None else None,
    )


def inventory_facts(row: Mapping[str, Any]) -> IssuanceFacts:
    """Facts of a stored certificate and its current version (a row of ``inventory_page``)."""
    dns_names: list[str] = []
    ip_addresses: list[str] = []
    for value in row["sans"] or []:
        try:
            ip_addresses.append(str(ipaddress.ip_address(value)))
        except ValueError:
            dns_names.append(str(value).lower())
    return IssuanceFacts(
        dns_names=tuple(dns_names),
        ip_addresses=tuple(ip_addresses),
        common_name=row["common_name"] or None,
        key_algorithm=str(row["key_algorithm"]),
        key_size=int(row["key_size"]),
        validity=row["version_not_after"] - row["version_not_before"],
        issuer_id=str(row["issuer_id"]),
        issuer_name=str(row["issuer_name"]),
        profile_id=str(row["profile_id"]),
        profile_name=str(row["profile_name"]),
        environment=str(row["environment"] or ""),
        owner_id=row["owner_id"],
        team_id=row["team_id"],
        tags=dict(row["tags"] or {}),
        source=str(row["source"]),
        name=str(row["name"]),
        certificate_id=str(row["id"]),
    )
