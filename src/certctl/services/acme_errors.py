"""ACME errors (RFC 8555 §6.7): a problem type from the ACME namespace, a detail and an HTTP status.

The use cases raise :class:`AcmeError`; the protocol edge turns it into an ``application/problem+json``
document with a fresh nonce. Kept apart from ``certctl.errors`` because ACME clients act on these exact
type URNs (e.g. retry on ``badNonce``).
"""

from __future__ import annotations

from typing import Any

ACME_ERROR_NS = "urn:ietf:params:acme:error:"
STATUS = {
    "unauthorized": 403,
    "orderNotReady": 403,
    "accountDoesNotExist": 400,
    "serverInternal": 500,
    "rateLimited": 429,
}


class AcmeError(Exception):
    """``kind`` is the last part of the type URN (``badNonce``, ``malformed``, ``badCSR``, ...)."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status or STATUS.get(kind, 400)
        self.extra = dict(extra or {})
        self.retry_after = retry_after
        """Seconds, sent as ``Retry-After`` (``rateLimited``, RFC 8555 §6.6)."""

    @property
    def type_uri(self) -> str:
        return ACME_ERROR_NS + self.kind

    def as_problem(self) -> dict[str, Any]:
        """The problem document (also stored as a challenge's or order's ``error``)."""
        return {"type": self.type_uri, "detail": self.detail, "status": self.status, **self.extra}


def not_found(what: str) -> AcmeError:
    return AcmeError("malformed", f"{what} does not exist", status=404)
