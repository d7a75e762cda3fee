"""The issuance-policy rule types and the request facts they judge.

Each rule is a frozen pydantic model (so one definition validates stored JSON, API bodies and CLI files,
and publishes its JSON schema) with a ``type`` tag, a ``mode`` (``block`` or ``warn``), an optional list
of ``environments`` it applies to, and :meth:`BaseRule.problems`, which says what a request breaks. The
engine that runs them is :mod:`certctl.domain.policy`. Pure: no I/O, no clock.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from certctl.domain.dns_patterns import (
    PatternSet,
    is_wildcard,
    looks_like_dns_name,
    parse_pattern,
)

Mode = Literal["block", "warn"]
KeyAlgorithm = Literal["ECDSA", "RSA", "Ed25519"]
MAX_PATTERNS = 500

Environment = Annotated[str, Field(max_length=64)]
TagKey = Annotated[str, Field(min_length=1, max_length=100)]
Reference = Annotated[str, Field(min_length=1, max_length=200)]


@dataclass(frozen=True)
class IssuanceFacts:
    """What a certificate request asks for, as seen by the policy engine (names already normalised)."""

    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    common_name: str | None
    key_algorithm: str
    key_size: int
    validity: timedelta
    issuer_id: str
    issuer_name: str
    profile_id: str
    profile_name: str
    environment: str = ""
    owner_id: str | None = None
    team_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    source: str = "api"
    name: str = ""
    """The managed certificate's name (for messages and the audit trail)."""
    certificate_id: str | None = None
    """Set for a renewal or an inventory check; a new certificate has no id yet."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))

    @cached_property
    def names(self) -> tuple[str, ...]:
        """The DNS names a certificate would carry: the SANs, plus a common name written as a host name
        (clients that still read the CN must not get a name that name rules never saw)."""
        names = [name.strip().lower().rstrip(".") for name in self.dns_names]
        if self.common_name and looks_like_dns_name(self.common_name):
            common = self.common_name.strip().lower().rstrip(".")
            if common not in names:
                names.append(common)
        return tuple(dict.fromkeys(names))


class BaseRule(BaseModel, ABC):
    """What every rule has: its mode and the environments it applies to (empty: all of them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "block"
    environments: tuple[Environment, ...] = Field(default=(), max_length=100)

    @field_validator("environments")
    @classmethod
    def _normalise_environments(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value.strip().lower() for value in values))

    def applies_to(self, environment: str) -> bool:
        return not self.environments or environment.strip().lower() in self.environments

    def where(self, facts: IssuanceFacts) -> str:
        """`` in environment 'dev'`` when the rule is environment-specific, so the message says why."""
        return f" in environment {facts.environment!r}" if self.environments else ""

    @abstractmethod
    def problems(self, facts: IssuanceFacts) -> list[str]:
        """What is wrong with the request under this rule (empty: nothing)."""


class _PatternRule(BaseRule):
    patterns: tuple[str, ...] = Field(min_length=1, max_length=MAX_PATTERNS)
    _set: PatternSet = PrivateAttr(default_factory=lambda: PatternSet(()))

    @field_validator("patterns")
    @classmethod
    def _canonical_patterns(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(str(parse_pattern(value)) for value in values))

    def model_post_init(self, context: Any) -> None:
        self._set = PatternSet(parse_pattern(value) for value in self.patterns)


class AllowedDomains(_PatternRule):
    """Every DNS name must lie inside one of the patterns (a wildcard name entirely)."""

    type: Literal["allowed_domains"] = "allowed_domains"

    def problems(self, facts: IssuanceFacts) -> list[str]:
        outside = [name for name in facts.names if self._set.covering(name) is None]
        if not outside:
            return []
        return [
            f"{_plural(outside, 'name')} outside the allowed domains{self.where(facts)}: {', '.join(outside)}"
        ]


class DeniedDomains(_PatternRule):
    """No DNS name may reach into a pattern (a wildcard name is refused if any name it covers is)."""

    type: Literal["denied_domains"] = "denied_domains"

    def problems(self, facts: IssuanceFacts) -> list[str]:
        hits: list[str] = []
        for name in facts.names:
            pattern = self._set.overlapping(name)
            if pattern is not None:
                hits.append(f"{name} (matches {pattern})")
        if not hits:
            return []
        return [f"{_plural(hits, 'name')} denied{self.where(facts)}: {', '.join(hits)}"]


class AllowedIssuers(BaseRule):
    """Only these issuers (by id or name) may sign; list environments to make it per environment."""

    type: Literal["allowed_issuers"] = "allowed_issuers"
    issuers: tuple[Reference, ...] = Field(min_length=1, max_length=100)

    def problems(self, facts: IssuanceFacts) -> list[str]:
        names = {ref.lower() for ref in self.issuers}
        if facts.issuer_id in self.issuers or facts.issuer_name.lower() in names:
            return []
        allowed = ", ".join(self.issuers)
        return [f"issuer {facts.issuer_name!r} is not allowed{self.where(facts)} (allowed: {allowed})"]


class KeyFloor(BaseRule):
    """Allowed key algorithms and minimum sizes (stricter than the profile, never looser)."""

    type: Literal["key_floor"] = "key_floor"
    algorithms: tuple[KeyAlgorithm, ...] = Field(default=(), max_length=3)
    min_rsa_bits: int | None = Field(default=None, ge=1024, le=16384)
    min_ecdsa_bits: int | None = Field(default=None, ge=256, le=521)

    @model_validator(mode="after")
    def _says_something(self) -> KeyFloor:
        if not self.algorithms and self.min_rsa_bits is None and self.min_ecdsa_bits is None:
            raise ValueError("give algorithms, min_rsa_bits or min_ecdsa_bits")
        return self

    def problems(self, facts: IssuanceFacts) -> list[str]:
        algorithm, size = facts.key_algorithm, facts.key_size
        if self.algorithms and algorithm not in self.algorithms:
            allowed = ", ".join(self.algorithms)
            return [f"key algorithm {algorithm} is not allowed{self.where(facts)} (allowed: {allowed})"]
        for family, floor in (("RSA", self.min_rsa_bits), ("ECDSA", self.min_ecdsa_bits)):
            if algorithm == family and floor is not None and size < floor:
                return [f"{family} key of {size} bits is below the minimum of {floor}{self.where(facts)}"]
        return []


class MaxLifetime(BaseRule):
    """The certificate may not be valid for longer than ``max_days``."""

    type: Literal["max_lifetime"] = "max_lifetime"
    max_days: int = Field(ge=1, le=36500)

    def problems(self, facts: IssuanceFacts) -> list[str]:
        limit = timedelta(days=self.max_days)
        if facts.validity <= limit:
            return []
        return [f"lifetime of {_duration(facts.validity)} exceeds the maximum of {self.max_days} days"]


class RequiredMetadata(BaseRule):
    """The request must name an owner, a team and/or carry these tags (with a non-empty value)."""

    type: Literal["required_metadata"] = "required_metadata"
    owner: bool = False
    team: bool = False
    tags: tuple[TagKey, ...] = Field(default=(), max_length=50)

    @model_validator(mode="after")
    def _says_something(self) -> RequiredMetadata:
        if not self.owner and not self.team and not self.tags:
            raise ValueError("require owner, team or at least one tag")
        return self

    def problems(self, facts: IssuanceFacts) -> list[str]:
        missing: list[str] = []
        if self.owner and not facts.owner_id:
            missing.append("an owner")
        if self.team and not facts.team_id:
            missing.append("a team")
        absent = [key for key in self.tags if not facts.tags.get(key, "").strip()]
        if absent:
            missing.append(f"{_plural(absent, 'tag')} {', '.join(absent)}")
        if not missing:
            return []
        return [f"missing {' and '.join(missing)}{self.where(facts)}"]


class MaxSans(BaseRule):
    """At most ``max`` subject alternative names (DNS names and IP addresses together)."""

    type: Literal["max_sans"] = "max_sans"
    max: int = Field(ge=1, le=1000)

    def problems(self, facts: IssuanceFacts) -> list[str]:
        count = len(facts.dns_names) + len(facts.ip_addresses)
        if count <= self.max:
            return []
        return [f"{count} subject alternative names exceed the maximum of {self.max}{self.where(facts)}"]


class Wildcards(BaseRule):
    """Whether wildcard names (``*.example.com``) may be issued at all."""

    type: Literal["wildcards"] = "wildcards"
    allowed: bool = False

    def problems(self, facts: IssuanceFacts) -> list[str]:
        wildcards = [name for name in facts.names if is_wildcard(name)]
        if self.allowed or not wildcards:
            return []
        return [f"wildcard names are not allowed{self.where(facts)}: {', '.join(wildcards)}"]


def _plural(items: list[str], word: str) -> str:
    return word if len(items) == 1 else f"{word}s"


def _duration(delta: timedelta) -> str:
    if delta % timedelta(days=1) == timedelta(0):
        return f"{delta.days} days"
    return f"{delta / timedelta(days=1):.2f} days"
