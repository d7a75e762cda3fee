"""Notifier connectors: typed classes with a pydantic options model and a secrets model, registered by
entry point (``certctl.notifiers``). One instance per configured channel.

``options`` are shown by the API; ``secrets`` (passwords, webhook URLs carrying tokens, HMAC keys,
routing keys) are sealed with the master key at rest and never returned or logged. A connector that
fails to load is recorded as *broken* with its error rather than dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any, ClassVar

import httpx2
from pydantic import BaseModel, ConfigDict

from certctl.domain.notifications import Event

TIMEOUT = 10.0


class NotifierOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NotifierSecrets(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class DeliveryFailed(Exception):
    """The channel refused or could not be reached; the delivery job retries with backoff."""


class NotifierConnector(ABC):
    type_name: ClassVar[str]
    options_model: ClassVar[type[NotifierOptions]]
    secrets_model: ClassVar[type[NotifierSecrets]]

    def __init__(self, options: NotifierOptions, secrets: NotifierSecrets) -> None:
        self.options = options
        self.secrets = secrets

    def __repr__(self) -> str:
        return f"{type(self).__name__}(options={self.options!r}, secrets=<redacted>)"

    @classmethod
    def options_schema(cls) -> dict[str, Any]:
        return cls.options_model.model_json_schema()

    @classmethod
    def secrets_schema(cls) -> dict[str, Any]:
        return cls.secrets_model.model_json_schema()

    @abstractmethod
    async def deliver(self, event: Event, *, http: httpx2.AsyncClient, now: datetime) -> dict[str, Any]:
        """Send one event; return what the receiver said (status, ids), or raise DeliveryFailed."""


async def post_json(
    http: httpx2.AsyncClient, url: str, body: dict[str, Any], *, headers: dict[str, str] | None = None
) -> httpx2.Response:
    """POST JSON; a transport error or a non-2xx answer raises DeliveryFailed (without the URL, which
    may carry a token)."""
    try:
        response = await http.post(url, json=body, headers=headers or {}, timeout=TIMEOUT)
    except (httpx2.HTTPError, httpx2.InvalidURL, ValueError) as exc:
        raise DeliveryFailed(f"could not reach the receiver: {type(exc).__name__}") from None
    if not response.is_success:
        raise DeliveryFailed(f"the receiver answered {response.status_code}: {response.text[:200]}")
    return response


@dataclass(frozen=True)
class NotifierEntry:
    name: str
    connector: type[NotifierConnector] | None
    error: str | None

    @property
    def broken(self) -> bool:
        return self.connector is None


def discover_notifiers() -> dict[str, NotifierEntry]:
    found: dict[str, NotifierEntry] = {}
    for entry in entry_points(group="certctl.notifiers"):
        try:
            loaded = entry.load()
            if not (isinstance(loaded, type) and issubclass(loaded, NotifierConnector)):
                raise TypeError(f"{entry.value} is not a NotifierConnector")
            found[entry.name] = NotifierEntry(entry.name, loaded, None)
        except Exception as exc:  # a broken plugin must not take the server down
            found[entry.name] = NotifierEntry(entry.name, None, f"{type(exc).__name__}: {exc}")
    return found
