"""The one settings model of the control plane (``CERTCTL_*`` environment variables and CLI flags).

Validated once at start-up and passed in; nothing reads the environment at import time.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from certctl.auth.config import IdentityConfig, SessionConfig
from certctl.errors import ConfigurationError

PLACEHOLDER_SECRETS = frozenset({"changeme", "change-me", "secret", "password", "token", "xxx", "example"})


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:8443`` for IPv6) into its parts."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigurationError(f"listen address {value!r} is not host:port")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"listen port {port} is out of range")
    host = host.strip("[]") or "127.0.0.1"
    return host, port


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CERTCTL_", extra="ignore", frozen=True)

    data_dir: Path = Path("./certctl-data")
    database_url: str | None = None
    listen: str = "127.0.0.1:8443"
    http_listen: str = "127.0.0.1:8080"
    public_http_url: str | None = Field(
        default=None, description="Base URL of the plain HTTP listener as relying parties reach it (CDP/AIA)."
    )
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_min_version: Literal["1.2", "1.3"] = "1.3"
    master_key: str | None = Field(default=None, repr=False)
    master_key_file: Path | None = None
    bootstrap_token: str | None = Field(default=None, repr=False)
    demo: bool = False
    workers: int = Field(default=1, ge=1, le=64)
    log_level: str = "info"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    session_ttl_seconds: int = Field(default=8 * 3600, ge=60)
    expiring_threshold_days: int = Field(default=30, ge=1)
    approval_ttl_hours: int = Field(default=72, ge=1, le=24 * 365)
    crl_keep_expired: bool = Field(default=False, description="Keep expired certificates on CRLs.")
    ocsp_sign_with_ca: bool = Field(
        default=False, description="Sign OCSP responses with the CA key instead of a delegated responder."
    )
    acme_http01_port: int = Field(default=80, ge=1, le=65535, description="Port http-01 is validated on.")
    acme_tlsalpn01_port: int = Field(
        default=443, ge=1, le=65535, description="Port tls-alpn-01 is validated on."
    )
    acme_dns_resolver: str | None = Field(
        default=None, description="host:port of the DNS server ACME validation resolves names with."
    )
    acme_default_profile: str = Field(default="default", description="Profile served at /acme/directory.")
    acme_terms_of_service: str | None = Field(default=None, description="URL of the ACME terms of service.")
    acme_website: str | None = Field(
        default=None, description="URL shown as the ACME directory's meta.website."
    )
    acme_issuer: str | None = Field(
        default=None, description="Issuer ACME signs with (default: the only one)."
    )
    acme_orders_per_account_hour: int = Field(
        default=300, ge=0, description="New ACME orders per account per rolling hour (0: no limit)."
    )
    acme_failures_per_identifier_hour: int = Field(
        default=5, ge=0, description="Failed validations of one name per account per hour (0: no limit)."
    )
    acme_orders_per_domain_hour: int = Field(
        default=0,
        ge=0,
        description="New ACME orders of all accounts naming one registered domain per hour (0: no limit).",
    )
    acme_accounts_per_address_hour: int = Field(
        default=0,
        ge=0,
        description="New ACME accounts from one client address (IPv6: its /64) per hour (0: no limit).",
    )
    acme_authz_reuse_hours: int = Field(
        default=24,
        ge=0,
        le=24 * 30,
        description="Reuse an account's proof of a name for this long (0: never).",
    )
    acme_caa_identities: str = Field(
        default="",
        description="Comma-separated CAA issuer domains of this CA; set, CAA (RFC 8659) is checked.",
    )
    session_idle_seconds: int = Field(
        default=1800, ge=60, description="A dashboard session unused for this long ends."
    )
    session_bind: Literal["none", "ip", "user-agent", "ip+user-agent"] = Field(
        default="none", description="Bind dashboard sessions to the client IP and/or user agent."
    )
    bootstrap_admin_groups: str = Field(
        default="",
        description="Comma-separated OIDC groups whose first member to sign in becomes admin (once).",
    )
    bootstrap_admin_provider: str | None = Field(
        default=None, description="The OIDC provider those groups belong to (needed with several)."
    )
    breakglass_enabled: bool = Field(
        default=False, description="Enable the break-glass admin sign-in (off: its routes answer 404)."
    )

    @field_validator("bootstrap_token")
    @classmethod
    def _no_placeholder_token(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if value.lower() in PLACEHOLDER_SECRETS or len(value) < 16:
            raise ValueError("CERTCTL_BOOTSTRAP_TOKEN must be a random value of at least 16 characters")
        return value

    def identity(self) -> IdentityConfig:
        groups = tuple(g.strip() for g in self.bootstrap_admin_groups.split(",") if g.strip())
        return IdentityConfig(
            session=SessionConfig(
                lifetime=timedelta(seconds=self.session_ttl_seconds),
                idle=timedelta(seconds=self.session_idle_seconds),
                binding=self.session_bind,
            ),
            bootstrap_admin_groups=groups,
            bootstrap_admin_provider=self.bootstrap_admin_provider or None,
            breakglass_enabled=self.breakglass_enabled,
        )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'certctl.db').resolve()}"

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    @property
    def http_listen_address(self) -> tuple[str, int]:
        return parse_listen(self.http_listen)

    @property
    def resolved_public_http_url(self) -> str:
        if self.public_http_url:
            return self.public_http_url.rstrip("/")
        host, port = self.http_listen_address
        if ":" in host:
            host = f"[{host}]"
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"http://{host}:{port}"
