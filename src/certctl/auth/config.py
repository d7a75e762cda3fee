"""How people sign in to the dashboard: session timeouts and binding, OIDC day-0, break-glass."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

Binding = Literal["none", "ip", "user-agent", "ip+user-agent"]


@dataclass(frozen=True)
class SessionConfig:
    lifetime: timedelta = timedelta(hours=8)
    """Absolute: a session ends this long after sign-in, however active."""
    idle: timedelta = timedelta(minutes=30)
    """A session unused for this long ends."""
    binding: Binding = "none"
    """Bind a session to the client's IP address and/or user agent (a mismatch ends it)."""


@dataclass(frozen=True)
class IdentityConfig:
    session: SessionConfig = SessionConfig()
    bootstrap_admin_groups: tuple[str, ...] = ()
    """OIDC day-0: the first user signing in with one of these groups becomes admin, once."""
    bootstrap_admin_provider: str | None = None
    """Which provider the groups above belong to (required when several providers exist)."""
    breakglass_enabled: bool = False
    """The sealed emergency sign-in; off by default, and then its routes answer 404."""
