"""Helpers for renewal tests: a frozen clock on the harness and certificates issued through the service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from certctl.domain.clock import FrozenClock
from certctl.services.audit import SYSTEM
from certctl.services.issuance import Issued, IssueRequest
from support.apps import ApiHarness


def freeze(api: ApiHarness) -> FrozenClock:
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    api.services.context.clock = clock
    return clock


def issue(api: ApiHarness, name: str, validity: timedelta, *, auto_renew: bool = True) -> dict[str, Any]:
    request = IssueRequest(
        name=name,
        issuer="local",
        profile="default",
        key_type="ecdsa-p256",
        sans=(f"{name}.example.com",),
        validity=validity,
        auto_renew=auto_renew,
    )
    issued = api.run(lambda: api.services.issuance.issue(request=request, actor=SYSTEM))
    assert isinstance(issued, Issued)
    return issued.certificate
