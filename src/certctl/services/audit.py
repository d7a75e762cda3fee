"""Who did what: the actor of a request and the audit rows that record it.

Details are redacted before they are stored: anything that looks like a secret never reaches the trail.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from certctl.domain.ids import new_id
from certctl.domain.rbac import Access, global_access
from certctl.store.repositories.audit import AuditRecord

SECRET_MARKERS = ("password", "secret", "token", "private_key", "api_key", "authorization", "cookie", "hmac")
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Actor:
    """The authenticated caller (an API key, a dashboard session, or the system itself) and its grants."""

    id: str
    name: str
    type: str
    access: Access = field(default_factory=Access)

    @property
    def roles(self) -> tuple[str, ...]:
        return self.access.roles

    @property
    def permissions(self) -> frozenset[str]:
        return self.access.permissions


SYSTEM = Actor(id="system", name="system", type="system", access=global_access(["admin"]))


@dataclass
class RequestInfo:
    request_id: str = ""
    body_sha256: str = ""
    started: float = field(default_factory=time.perf_counter)

    def without_body(self) -> RequestInfo:
        """For a request whose body holds a secret (an API key, a password, a client secret, a bootstrap
        token): the audit row keeps not even the body's SHA-256, which would let a low-entropy secret be
        guessed offline."""
        return RequestInfo(request_id=self.request_id, started=self.started)


def redact(details: Mapping[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if any(marker in key.lower() for marker in SECRET_MARKERS):
            clean[key] = REDACTED
        elif isinstance(value, Mapping):
            clean[key] = redact(value)
        else:
            clean[key] = value
    return clean


def audit_record(
    *,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: str,
    at: datetime,
    request: RequestInfo | None = None,
    details: Mapping[str, Any] | None = None,
    outcome: str = "success",
) -> AuditRecord:
    info = request or RequestInfo()
    return AuditRecord(
        event_id=new_id("audit"),
        occurred_at=at,
        actor=actor.name,
        actor_type=actor.type,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        details=redact(details or {}),
        body_sha256=info.body_sha256,
        latency_ms=(time.perf_counter() - info.started) * 1000.0,
        request_id=info.request_id,
    )
