"""Issuance policies: rules checked before anything is signed, each one blocking or only warning.

A policy is a named, ordered list of rules (:mod:`certctl.domain.policy_rules`). :func:`evaluate` checks
the :class:`IssuanceFacts` of one request against every rule of every policy it is given and returns one
:class:`RuleOutcome` per broken rule. The facts are the same whichever door the request came through
(REST API, ACME, SCEP, EST, a renewal), so one function decides for all of them. A rule applies only in
the environments it lists (in every environment when it lists none); a rule in ``warn`` mode reports
without blocking. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from certctl.domain.policy_rules import (
    AllowedDomains,
    AllowedIssuers,
    BaseRule,
    DeniedDomains,
    IssuanceFacts,
    KeyFloor,
    MaxLifetime,
    MaxSans,
    Mode,
    RequiredMetadata,
    Wildcards,
)

__all__ = [
    "RULE_TYPES",
    "AllowedDomains",
    "AllowedIssuers",
    "DeniedDomains",
    "IssuanceFacts",
    "KeyFloor",
    "MaxLifetime",
    "MaxSans",
    "Policy",
    "RequiredMetadata",
    "Rule",
    "RuleError",
    "RuleOutcome",
    "Wildcards",
    "evaluate",
    "parse_rules",
]

MAX_RULES = 100
"""Rules per policy; a longer list is better split into several policies."""

Rule = Annotated[
    AllowedDomains
    | DeniedDomains
    | AllowedIssuers
    | KeyFloor
    | MaxLifetime
    | RequiredMetadata
    | MaxSans
    | Wildcards,
    Field(discriminator="type"),
]
RULE_MODELS: tuple[type[BaseRule], ...] = (
    AllowedDomains,
    DeniedDomains,
    AllowedIssuers,
    KeyFloor,
    MaxLifetime,
    RequiredMetadata,
    MaxSans,
    Wildcards,
)
RULE_TYPES = tuple(str(model.model_fields["type"].default) for model in RULE_MODELS)
_RULES: TypeAdapter[list[Rule]] = TypeAdapter(list[Rule])


class RuleError(ValueError):
    """A rule list that does not validate; the message says which rule and which field."""


def parse_rules(raw: object) -> tuple[Rule, ...]:
    """Rules from JSON-shaped data (stored rows, request bodies, CLI files)."""
    if isinstance(raw, list | tuple) and len(raw) > MAX_RULES:
        raise RuleError(f"a policy holds at most {MAX_RULES} rules")
    try:
        return tuple(_RULES.validate_python(list(raw) if isinstance(raw, tuple) else raw))
    except ValidationError as exc:
        raise RuleError(describe_errors(exc)) from None


def rules_to_json(rules: Iterable[BaseRule]) -> list[dict[str, Any]]:
    """The canonical stored form: every field spelled out, patterns normalised."""
    return [rule.model_dump(mode="json") for rule in rules]


def describe_errors(exc: ValidationError) -> str:
    """``rule 2 (key_floor) min_rsa_bits: ...`` for each of the first few errors."""
    parts: list[str] = []
    for error in exc.errors()[:5]:
        location = [str(part) for part in error["loc"]]
        where = "rules"
        if location and location[0].isdigit():
            where = f"rule {int(location.pop(0)) + 1}"
            if location and location[0] in RULE_TYPES:
                where += f" ({location.pop(0)})"
        path = ".".join(location)
        parts.append(f"{where}{' ' + path if path else ''}: {error['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Policy:
    """A stored policy as the engine sees it: enabled or not is the caller's choice of what to pass."""

    id: str
    name: str
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class RuleOutcome:
    """One broken rule: which policy and rule, its mode, and what was wrong."""

    policy_id: str
    policy_name: str
    rule_number: int
    """1-based position of the rule in its policy."""
    rule_type: str
    mode: Mode
    message: str

    @property
    def blocking(self) -> bool:
        return self.mode == "block"

    @property
    def label(self) -> str:
        """``policy "prod-names" rule 1 (denied_domains)``: what an operator searches the policy for."""
        rule = f"rule {self.rule_number} ({self.rule_type})" if self.rule_number else f"({self.rule_type})"
        return f'policy "{self.policy_name}" {rule}'

    def describe(self) -> str:
        return f"{self.label}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy_name,
            "policy_id": self.policy_id,
            "rule": self.rule_number,
            "type": self.rule_type,
            "mode": self.mode,
            "message": self.describe(),
        }


def evaluate(policies: Iterable[Policy], facts: IssuanceFacts) -> list[RuleOutcome]:
    """Every broken rule of every policy, in the order given (policies, then rules); nothing short-circuits,
    so one refusal lists every reason at once."""
    outcomes: list[RuleOutcome] = []
    for policy in policies:
        for number, rule in enumerate(policy.rules, start=1):
            if not rule.applies_to(facts.environment):
                continue
            problems = rule.problems(facts)
            if problems:
                outcomes.append(
                    RuleOutcome(
                        policy_id=policy.id,
                        policy_name=policy.name,
                        rule_number=number,
                        rule_type=rule.type,
                        mode=rule.mode,
                        message="; ".join(problems),
                    )
                )
    return outcomes


def blocking(outcomes: Iterable[RuleOutcome]) -> list[RuleOutcome]:
    return [outcome for outcome in outcomes if outcome.blocking]


def warnings(outcomes: Iterable[RuleOutcome]) -> list[RuleOutcome]:
    return [outcome for outcome in outcomes if not outcome.blocking]
