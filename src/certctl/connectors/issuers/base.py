"""Issuer connectors: typed classes with a pydantic options model, registered by entry point.

One instance per configured issuer. A connector that fails to load is recorded as *broken* with its error
(and shown as such) rather than silently dropped.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, ClassVar

from cryptography import x509
from pydantic import BaseModel, ConfigDict

from certctl.pki.keys import PublicKey


class IssuerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class IssuanceRequest:
    public_key: PublicKey
    common_name: str | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    emails: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    ekus: tuple[str, ...]
    must_staple: bool


@dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    chain_pem: str
    issuer_ca_id: str | None


class IssuerConnector(ABC):
    type_name: ClassVar[str]
    options_model: ClassVar[type[IssuerOptions]]

    def __init__(self, options: IssuerOptions) -> None:
        self.options = options

    @classmethod
    def options_schema(cls) -> dict[str, Any]:
        return cls.options_model.model_json_schema()


@dataclass(frozen=True)
class ConnectorEntry:
    name: str
    connector: type[IssuerConnector] | None
    error: str | None

    @property
    def broken(self) -> bool:
        return self.connector is None


def discover_issuers() -> dict[str, ConnectorEntry]:
    found: dict[str, ConnectorEntry] = {}
    for entry in entry_points(group="certctl.issuers"):
        try:
            loaded = entry.load()
            if not (isinstance(loaded, type) and issubclass(loaded, IssuerConnector)):
                raise TypeError(f"{entry.value} is not an IssuerConnector")
            found[entry.name] = ConnectorEntry(entry.name, loaded, None)
        except Exception as exc:  # a broken plugin must not take the server down
            found[entry.name] = ConnectorEntry(entry.name, None, f"{type(exc).__name__}: {exc}")
    return found
