"""Exceptions raised by the X.509 toolkit.

Every error carries a ``message`` that is safe to show to end users: it names the
problem (and, where useful, the offending name or value) but never contains private
key material or raw cryptographic library internals that could leak secrets.
"""

from __future__ import annotations

__all__ = ["ChainError", "CsrError", "KeyPolicyError", "NameConstraintError", "PkiError"]


class PkiError(Exception):
    """Base class for every error raised by :mod:`certctl.pki`."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CsrError(PkiError):
    """A certificate signing request (RFC 2986) is malformed, unsigned or unacceptable."""


class KeyPolicyError(PkiError):
    """A key, key specification or algorithm choice is unknown or not supported."""


class NameConstraintError(PkiError):
    """Name constraints (RFC 5280 §4.2.1.10) are malformed or a name falls outside them."""


class ChainError(PkiError):
    """A certification path (RFC 5280 §6) cannot be built, issued into, or validated."""
