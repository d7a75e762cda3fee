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
        subproblems: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status or STATUS.get(kind, 400)
        self.extra = dict(extra or {})
        self.retry_after = retry_after
        """Seconds, sent as ``Retry-After`` (``rateLimited``, RFC 8555 §6.6)."""
        self.subproblems = list(subproblems or [])
        """RFC 8555 §6.7.1: one problem per identifier, each with its ``identifier``."""

    @property
    def type_uri(self) -> str:
        return ACME_ERROR_NS + self.kind

    def as_problem(self) -> dict[str, Any]:
        """The problem document (also stored as a challenge's or order's ``error``)."""
        problem = {"type": self.type_uri, "detail": self.detail, "status": self.status, **self.extra}
        if self.subproblems:
            problem["subproblems"] = self.subproblems
        return problem

    def subproblem(self, identifier: Any) -> dict[str, Any]:
        """This error as a subproblem of ``identifier`` (named only when it is a well-formed object)."""
        found: dict[str, Any] = {"type": self.type_uri, "detail": self.detail}
        if (
            isinstance(identifier, dict)
            and isinstance(identifier.get("type"), str)
            and isinstance(identifier.get("value"), str)
        ):
            found["identifier"] = {"type": identifier["type"], "value": identifier["value"]}
        return found


def per_identifier(refused: list[tuple[Any, AcmeError]], total: int) -> AcmeError:
    """One error for identifiers refused one by one, with a subproblem for each (RFC 8555 §6.7.1): the
    error itself when there is one, else their common type (``malformed`` when they differ)."""
    subproblems = [error.subproblem(identifier) for identifier, error in refused]
    if len(refused) == 1:
        only = refused[0][1]
        return AcmeError(only.kind, only.detail, status=only.status, subproblems=subproblems)
    kinds = {error.kind for _, error in refused}
    kind = kinds.pop() if len(kinds) == 1 else "malformed"
    detail = f"{len(refused)} of the {total} identifiers were refused (see subproblems)"
    return AcmeError(kind, detail, subproblems=subproblems)


def not_found(what: str) -> AcmeError:
    return AcmeError("malformed", f"{what} does not exist", status=404)
