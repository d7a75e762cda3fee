"""One error tree for the whole product.

Every error a user can cause is a :class:`CertctlError` subclass carrying an HTTP status and a problem
type. The API edge turns them into RFC 9457 problem documents in one place (``certctl.api.problems``);
the CLI turns them into one readable line. Messages must never contain secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

PROBLEM_BASE = "urn:certctl:problem:"


class CertctlError(Exception):
    """Base of every expected error. ``message`` is safe to show to the caller."""

    status: ClassVar[int] = 400
    problem: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, message: str, *, extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra: dict[str, Any] = dict(extra or {})

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.problem


class ValidationFailed(CertctlError):
    status = 422
    problem = "validation-error"
    title = "The request is not valid"


class BadCsr(CertctlError):
    status = 422
    problem = "bad-csr"
    title = "The certificate signing request is not acceptable"


class PolicyViolation(CertctlError):
    status = 422
    problem = "policy-violation"
    title = "The request breaks the certificate profile"


class PolicyBlocked(PolicyViolation):
    """Refused by an issuance policy (same problem type; ``violations`` names each broken rule)."""

    title = "The request breaks an issuance policy"


class NameConstraintViolation(CertctlError):
    status = 422
    problem = "name-constraint-violation"
    title = "A name is outside the issuing CA's name constraints"


class NotFound(CertctlError):
    status = 404
    problem = "not-found"
    title = "Not found"


class Conflict(CertctlError):
    status = 409
    problem = "conflict"
    title = "Conflict with the current state"


class Gone(CertctlError):
    status = 410
    problem = "gone"
    title = "Gone"


class Unauthenticated(CertctlError):
    status = 401
    problem = "unauthenticated"
    title = "Authentication required"


class Forbidden(CertctlError):
    status = 403
    problem = "forbidden"
    title = "Permission denied"


class PayloadTooLarge(CertctlError):
    status = 413
    problem = "payload-too-large"
    title = "The request body is too large"


class UnsupportedMediaType(CertctlError):
    status = 415
    problem = "unsupported-media-type"
    title = "Unsupported media type"


class IssuerUnavailable(CertctlError):
    status = 502
    problem = "issuer-unavailable"
    title = "The issuer could not complete the request"


class SealedSecretUnavailable(CertctlError):
    """A sealed secret does not open under the configured master key (wrong key, or altered data)."""

    status = 503
    problem = "sealed-secret-unavailable"
    title = "A stored secret cannot be opened"


class ConfigurationError(CertctlError):
    """Start-up refuses to run: bad settings, unusable TLS material, placeholder secrets."""

    status = 500
    problem = "configuration-error"
    title = "Configuration error"
