"""Request bodies of ``/api/v1/policies``. Rules are the domain's own models (one definition validates the
API, the stored JSON and CLI files); unknown fields and unknown rule types are refused with 422."""

from __future__ import annotations

from pydantic import Field

from certctl.api.schemas import NAME, NAME_OPT, Strict
from certctl.domain.policy import MAX_RULES, Rule


class PolicyCreate(Strict):
    name: str = NAME
    description: str = Field(default="", max_length=2000)
    enabled: bool = True
    rules: list[Rule] = Field(default_factory=list, max_length=MAX_RULES)


class PolicyUpdate(Strict):
    name: str | None = NAME_OPT
    description: str | None = Field(default=None, max_length=2000)
    enabled: bool | None = None
    rules: list[Rule] | None = Field(default=None, max_length=MAX_RULES)
