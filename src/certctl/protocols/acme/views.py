"""The JSON resources of RFC 8555 §7.1 as clients see them, built from stored rows and the base URL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from certctl.services.acme import AcmeConfig


def rfc3339(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


class Urls:
    """Every URL of one profile's ACME server, from the base URL the client used."""

    def __init__(self, base: str, profile: str) -> None:
        self.root = f"{base.rstrip('/')}/acme/{profile}"

    def directory(self) -> str:
        return f"{self.root}/directory"

    def of(self, kind: str, resource_id: str = "") -> str:
        return f"{self.root}/{kind}/{resource_id}" if resource_id else f"{self.root}/{kind}"


def directory(
    urls: Urls,
    config: AcmeConfig,
    *,
    external_account_required: bool = False,
    profiles: dict[str, str] | None = None,
) -> dict[str, Any]:
    """RFC 8555 §7.1.1, with ``renewalInfo`` (RFC 9773 §3) and ``meta.profiles`` (ACME profiles)."""
    meta: dict[str, Any] = {"externalAccountRequired": external_account_required}
    if config.terms_of_service:
        meta["termsOfService"] = config.terms_of_service
    if config.website:
        meta["website"] = config.website
    if config.caa_identities:
        meta["caaIdentities"] = list(config.caa_identities)
    if profiles:
        meta["profiles"] = dict(profiles)
    return {
        "newNonce": urls.of("new-nonce"),
        "newAccount": urls.of("new-account"),
        "newOrder": urls.of("new-order"),
        "revokeCert": urls.of("revoke-cert"),
        "keyChange": urls.of("key-change"),
        "renewalInfo": urls.of("renewal-info"),
        "meta": meta,
    }


def account(urls: Urls, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": row["status"],
        "contact": list(row["contact"]),
        "orders": urls.of("acct", row["id"]) + "/orders",
        "createdAt": rfc3339(row["created_at"]),
    }


def order(urls: Urls, row: dict[str, Any], authz_ids: list[str]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "status": row["status"],
        "expires": rfc3339(row["expires_at"]),
        "identifiers": row["identifiers"],
        "authorizations": [urls.of("authz", authz_id) for authz_id in authz_ids],
        "finalize": urls.of("order", row["id"]) + "/finalize",
        "profile": row["profile"],
    }
    if row["version_id"] and row["status"] == "valid":
        view["certificate"] = urls.of("cert", row["version_id"])
    if row["error"]:
        view["error"] = row["error"]
    if row["replaces"]:
        view["replaces"] = row["replaces"]
    return view


def challenge(urls: Urls, row: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": row["type"],
        "url": urls.of("chall", row["id"]),
        "status": row["status"],
        "token": row["token"],
    }
    if row["validated_at"] is not None:
        view["validated"] = rfc3339(row["validated_at"])
    if row["error"]:
        view["error"] = row["error"]
    return view


def authorization(urls: Urls, row: dict[str, Any], challenges: list[dict[str, Any]]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "status": row["status"],
        "expires": rfc3339(row["expires_at"]),
        "identifier": {"type": row["identifier_type"], "value": row["identifier_value"]},
        "challenges": [challenge(urls, c) for c in challenges],
    }
    if row["wildcard"]:
        view["wildcard"] = True
    return view
