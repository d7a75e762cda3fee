"""Request and response bodies of ``/api/v1``. Unknown fields are refused (``extra="forbid"``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from certctl.domain.profiles import (
    MAX_JITTER,
    MAX_THRESHOLD_DAYS,
    MAX_THRESHOLDS,
    expiry_thresholds,
    renewal_policy,
)
from certctl.domain.renewal import RenewalPolicy
from certctl.pki.keys import KEY_SPECS

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._@:/+-]*$"
NAME = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
NAME_OPT = Field(default=None, min_length=1, max_length=200, pattern=NAME_PATTERN)
PEM_MAX = 65_536


EkuName = Literal["serverAuth", "clientAuth", "codeSigning", "emailProtection", "timeStamping"]
KeyAlgorithm = Literal["ECDSA", "RSA", "Ed25519"]
DEFAULT_ALGORITHMS: tuple[KeyAlgorithm, ...] = ("ECDSA", "RSA")
DEFAULT_EKUS: tuple[EkuName, ...] = ("serverAuth",)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None


class CertificateCreate(Strict):
    name: str = NAME
    issuer: str = Field(min_length=1, max_length=200)
    profile: str = Field(min_length=1, max_length=200)
    csr: str | None = Field(
        default=None, max_length=PEM_MAX, description="PEM CSR; omit for server-side keys"
    )
    key_type: str | None = Field(default=None, description=f"server-side key type: {', '.join(KEY_SPECS)}")
    common_name: str | None = Field(default=None, max_length=255)
    sans: list[str] = Field(default_factory=list, max_length=100)
    validity_days: int | None = Field(default=None, ge=1, le=36500)
    validity_seconds: int | None = Field(default=None, ge=60, le=3_153_600_000)
    ekus: list[EkuName] | None = None
    owner: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=200)
    tags: dict[str, str] = Field(default_factory=dict, max_length=50)
    environment: str = Field(default="", max_length=64)
    auto_renew: bool = True
    targets: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="Deploy to these targets: the serving agent generates the key (no CSR, no key_type)",
    )

    @field_validator("key_type")
    @classmethod
    def _known_key_type(cls, value: str | None) -> str | None:
        if value is not None and value not in KEY_SPECS:
            raise ValueError(f"unknown key type; choose one of {', '.join(KEY_SPECS)}")
        return value


class CertificateUpdate(Strict):
    name: str | None = NAME_OPT
    owner: str | None = Field(default=None, max_length=200)
    team: str | None = Field(default=None, max_length=200)
    tags: dict[str, str] | None = Field(default=None, max_length=50)
    environment: str | None = Field(default=None, max_length=64)
    auto_renew: bool | None = None


class RenewRequest(Strict):
    csr: str | None = Field(default=None, max_length=PEM_MAX)


class ExportRequest(Strict):
    format: Literal["pem", "pkcs12"] = "pem"
    password: str | None = Field(default=None, min_length=8, max_length=200)
    include_key: bool = False


class RenewalRules(Strict):
    """When certificates under a profile renew; the rules of ``certctl.domain.profiles.renewal_policy``."""

    mode: Literal["fraction", "window"] = Field(
        default="fraction", description="fraction: after a share of the lifetime; window: before notAfter"
    )
    fraction: float | None = Field(
        default=None, gt=0, lt=1, description="mode fraction: share of the lifetime (default 2/3)"
    )
    window_days: int | None = Field(
        default=None, ge=1, le=3650, description="mode window: days before notAfter"
    )
    window_seconds: int | None = Field(
        default=None, ge=60, le=3650 * 86400, description="mode window: seconds before notAfter"
    )
    jitter: float | None = Field(
        default=None,
        ge=0,
        le=MAX_JITTER,
        description="share of the renewal window to spread by (default 0.1)",
    )

    def policy(self) -> RenewalPolicy:
        return renewal_policy(self.model_dump(exclude_none=True))

    @model_validator(mode="after")
    def _coherent(self) -> RenewalRules:
        self.policy()
        return self


class AcmeRules(Strict):
    """How the profile's ACME directory behaves (see docs/reference/acme.md)."""

    enabled: bool = True
    allow_wildcards: bool = False
    issuer: str | None = Field(default=None, max_length=200)
    require_eab: bool = Field(default=False, description="new accounts need an external account binding")
    validation: Literal["challenge", "trusted"] = Field(
        default="challenge",
        description="trusted: EAB-bound accounts get the profile's names without challenges",
    )

    @model_validator(mode="after")
    def _trusted_needs_eab(self) -> AcmeRules:
        if self.validation == "trusted" and not self.require_eab:
            raise ValueError("acme.validation 'trusted' needs acme.require_eab")
        return self


class ProfileRules(Strict):
    allowed_key_algorithms: list[KeyAlgorithm] = Field(
        default_factory=lambda: list(DEFAULT_ALGORITHMS), min_length=1
    )
    min_rsa_bits: int = Field(default=2048, ge=2048, le=16384)
    min_ecdsa_bits: int = Field(default=256, ge=256, le=521)
    max_ttl_seconds: int = Field(default=397 * 86400, ge=60)
    default_ttl_seconds: int = Field(default=90 * 86400, ge=60)
    allowed_ekus: list[
        Literal["serverAuth", "clientAuth", "codeSigning", "emailProtection", "timeStamping"]
    ] = Field(default_factory=lambda: list(DEFAULT_EKUS), min_length=1)
    default_ekus: list[
        Literal["serverAuth", "clientAuth", "codeSigning", "emailProtection", "timeStamping"]
    ] = Field(default_factory=lambda: list(DEFAULT_EKUS), min_length=1)
    san_patterns: list[str] = Field(default_factory=list, max_length=200)
    must_staple: bool = False
    requires_approval: bool = False
    allow_server_keygen: bool = True
    allow_ip_sans: bool = True
    renewal: RenewalRules | None = Field(
        default=None, description="when certificates renew; omitted: 2/3 of the lifetime"
    )
    expiry_thresholds_days: list[int] | None = Field(
        default=None,
        max_length=MAX_THRESHOLDS,
        description=f"days before notAfter to warn at (0-{MAX_THRESHOLD_DAYS}); omitted: 30, 14, 7, 0",
    )
    acme: AcmeRules | None = Field(default=None, description="ACME directory rules; omitted: defaults")

    @field_validator("expiry_thresholds_days")
    @classmethod
    def _thresholds(cls, value: list[int] | None) -> list[int] | None:
        return None if value is None else list(expiry_thresholds(value))

    @model_validator(mode="after")
    def _consistent(self) -> ProfileRules:
        if self.default_ttl_seconds > self.max_ttl_seconds:
            raise ValueError("default_ttl_seconds cannot exceed max_ttl_seconds")
        if not set(self.default_ekus) <= set(self.allowed_ekus):
            raise ValueError("default_ekus must be a subset of allowed_ekus")
        window = self.renewal.policy().window if self.renewal is not None else None
        if window is not None and window.total_seconds() >= self.max_ttl_seconds:
            raise ValueError("the renewal window must be shorter than max_ttl_seconds")
        return self

    @model_serializer(mode="wrap")
    def _stored_shape(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Optional rules left out are not stored (absent means the product default), and a renewal
        rule keeps only the fields it was given."""
        data: dict[str, Any] = handler(self)
        if self.renewal is None:
            data.pop("renewal", None)
        elif isinstance(data.get("renewal"), dict):
            data["renewal"] = {k: v for k, v in data["renewal"].items() if v is not None}
        if self.expiry_thresholds_days is None:
            data.pop("expiry_thresholds_days", None)
        if self.acme is None:
            data.pop("acme", None)
        return data


class ProfileCreate(Strict):
    name: str = NAME
    description: str = Field(default="", max_length=2000)
    rules: ProfileRules = Field(default_factory=ProfileRules)


class ProfileUpdate(Strict):
    name: str | None = NAME_OPT
    description: str | None = Field(default=None, max_length=2000)
    rules: ProfileRules | None = None


class IssuerCreate(Strict):
    name: str = NAME
    type: str = Field(min_length=1, max_length=40)
    options: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


class IssuerUpdate(Strict):
    name: str | None = NAME_OPT
    options: dict[str, Any] | None = None
    enabled: bool | None = None


class SubjectIn(Strict):
    common_name: str = Field(min_length=1, max_length=64)
    organization: str | None = Field(default=None, max_length=64)
    organizational_unit: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, min_length=2, max_length=2)


class NameConstraintsIn(Strict):
    permitted_dns: list[str] = Field(default_factory=list, max_length=100)
    excluded_dns: list[str] = Field(default_factory=list, max_length=100)
    permitted_ip: list[str] = Field(default_factory=list, max_length=100)
    excluded_ip: list[str] = Field(default_factory=list, max_length=100)
    permitted_email: list[str] = Field(default_factory=list, max_length=100)
    excluded_email: list[str] = Field(default_factory=list, max_length=100)


class CaCreate(Strict):
    name: str = NAME
    parent: str | None = Field(default=None, description="Parent CA id or name; omit for a self-signed root")
    subject: SubjectIn
    key_type: Literal["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"] = (
        "ecdsa-p256"
    )
    validity_days: int = Field(default=3650, ge=1, le=36500)
    path_length: int | None = Field(default=None, ge=0, le=10)
    name_constraints: NameConstraintsIn = Field(default_factory=NameConstraintsIn)


class CaImport(Strict):
    name: str = NAME
    certificate: str = Field(min_length=1, max_length=PEM_MAX)
    private_key: str | None = Field(default=None, max_length=PEM_MAX)
    parent: str | None = None


class TeamCreate(Strict):
    name: str = NAME
    description: str = Field(default="", max_length=2000)


class TeamUpdate(Strict):
    name: str | None = NAME_OPT
    description: str | None = Field(default=None, max_length=2000)


class OwnerCreate(Strict):
    name: str = NAME
    email: str = Field(default="", max_length=320)
    team: str | None = Field(default=None, max_length=200)


class OwnerUpdate(Strict):
    name: str | None = NAME_OPT
    email: str | None = Field(default=None, max_length=320)
    team: str | None = Field(default=None, max_length=200)


class KeyCreate(Strict):
    name: str = NAME
    roles: list[str] = Field(min_length=1, max_length=10)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class BootstrapRequest(Strict):
    token: str = Field(min_length=1, max_length=500)
    name: str = Field(default="bootstrap-admin", min_length=1, max_length=200)


class NewKeyOut(BaseModel):
    key: dict[str, Any]
    secret: str = Field(description="The API key. Shown once; store it now.")


class AuditQueryIn(Strict):
    action: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
