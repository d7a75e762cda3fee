"""The policy engine as pure code: every rule type, block vs warn, environments, DNS pattern edge cases."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from certctl.domain.dns_patterns import PatternSet, covers, looks_like_dns_name, overlaps, parse_pattern
from certctl.domain.policy import (
    AllowedDomains,
    DeniedDomains,
    IssuanceFacts,
    Policy,
    RuleError,
    blocking,
    evaluate,
    parse_rules,
    rules_to_json,
    warnings,
)

FACTS = IssuanceFacts(
    dns_names=("api.example.com",),
    ip_addresses=(),
    common_name="api.example.com",
    key_algorithm="ECDSA",
    key_size=256,
    validity=timedelta(days=90),
    issuer_id="iss_1",
    issuer_name="local",
    profile_id="prf_1",
    profile_name="default",
    environment="dev",
    name="api",
)


def facts(**changes: Any) -> IssuanceFacts:
    return replace(FACTS, **changes)


def judge(rules: list[dict[str, Any]], request: IssuanceFacts) -> list[str]:
    policy = Policy(id="pol_1", name="p", rules=parse_rules(rules))
    return [outcome.message for outcome in evaluate([policy], request)]


@pytest.mark.parametrize(
    ("pattern", "name", "covered", "overlapping"),
    [
        ("example.com", "example.com", True, True),
        ("example.com", "EXAMPLE.com.", True, True),
        ("example.com", "a.example.com", False, False),
        ("*.example.com", "a.example.com", True, True),
        ("*.example.com", "a.b.example.com", False, False),
        ("*.example.com", "example.com", False, False),
        ("*.example.com", "*.example.com", True, True),
        ("*.example.com", "*.a.example.com", False, False),
        ("**.example.com", "a.b.example.com", True, True),
        ("**.example.com", "example.com", False, False),
        ("**.example.com", "*.example.com", True, True),
        ("**.example.com", "*.a.example.com", True, True),
        (".example.com", "deep.a.example.com", True, True),
        ("**.example.com", "badexample.com", False, False),
        ("api.example.com", "*.example.com", False, True),
        ("a.b.example.com", "*.example.com", False, False),
        ("*.a.example.com", "*.example.com", False, False),
        ("**.a.example.com", "*.example.com", False, False),
        ("example.com", "*.com", False, True),
    ],
)
def test_patterns_cover_and_overlap(pattern: str, name: str, covered: bool, overlapping: bool) -> None:
    parsed = parse_pattern(pattern)
    assert covers(parsed, name) is covered
    assert overlaps(parsed, name) is overlapping


PATTERN_POOL = (
    "example.com",
    "*.example.com",
    "**.a.example.com",
    "b.c.example.com",
    ".d.example.com",
    "*.com",
)
NAME_POOL = (
    "example.com",
    "x.example.com",
    "*.example.com",
    "a.example.com",
    "y.a.example.com",
    "*.a.example.com",
    "*.y.a.example.com",
    "c.example.com",
    "*.c.example.com",
    "b.c.example.com",
    "*.d.example.com",
    "d.example.com",
    "com",
    "*.com",
    "other.org",
    "*.org",
)


@pytest.mark.parametrize("size", [1, 2, len(PATTERN_POOL)])
def test_pattern_set_agrees_with_the_single_pattern_rules(size: int) -> None:
    """The indexed matcher the rules use answers exactly what checking each pattern in turn answers."""
    for chosen in itertools.combinations([parse_pattern(p) for p in PATTERN_POOL], size):
        indexed = PatternSet(chosen)
        for name in NAME_POOL:
            covered = any(covers(p, name) for p in chosen)
            overlapping = any(overlaps(p, name) for p in chosen)
            assert (indexed.covering(name) is not None) is covered, (chosen, name)
            assert (indexed.overlapping(name) is not None) is overlapping, (chosen, name)


@pytest.mark.parametrize(
    "pattern", ["", "*", "**", ".", "a.*.com", "*a.example.com", "ex ample.com", "-a.com"]
)
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        parse_pattern(pattern)


def test_patterns_are_stored_canonically() -> None:
    (rule,) = parse_rules(
        [{"type": "denied_domains", "patterns": [".Prod.Example.com.", "**.prod.example.com"]}]
    )
    assert isinstance(rule, DeniedDomains)
    assert rule.patterns == ("**.prod.example.com",)
    assert rules_to_json([rule]) == [
        {"mode": "block", "environments": [], "patterns": ["**.prod.example.com"], "type": "denied_domains"}
    ]


def test_common_names_count_as_names_only_when_written_as_host_names() -> None:
    assert looks_like_dns_name("www.example.com")
    assert looks_like_dns_name("*.example.com")
    assert not looks_like_dns_name("My Service")
    assert not looks_like_dns_name("192.0.2.1")
    assert not looks_like_dns_name("localhost")
    assert facts(dns_names=("a.example.com",), common_name="B.example.com").names == (
        "a.example.com",
        "b.example.com",
    )


def test_denied_domains_blocks_names_and_wildcards_reaching_in() -> None:
    rules = [{"type": "denied_domains", "patterns": ["*.prod.example.com", "**.prod.example.com"]}]
    assert judge(rules, facts(dns_names=("api.prod.example.com",), common_name=None)) == [
        "name denied: api.prod.example.com (matches *.prod.example.com)"
    ]
    literal = judge(rules, facts(dns_names=("*.prod.example.com",), common_name=None))
    assert literal == ["name denied: *.prod.example.com (matches *.prod.example.com)"]
    exact_only = [{"type": "denied_domains", "patterns": ["secret.example.com"]}]
    assert judge(exact_only, facts(dns_names=("*.example.com",), common_name=None))
    assert judge(rules, facts(dns_names=("prod.example.com",), common_name=None)) == []


def test_denied_domains_sees_a_common_name_missing_from_the_sans() -> None:
    rules = [{"type": "denied_domains", "patterns": ["evil.example.com"]}]
    assert judge(rules, facts(dns_names=("ok.example.com",), common_name="evil.example.com"))


def test_allowed_domains_needs_every_name_inside() -> None:
    rules = [{"type": "allowed_domains", "patterns": ["**.corp.example", "corp.example"]}]
    assert judge(rules, facts(dns_names=("corp.example", "a.b.corp.example"), common_name=None)) == []
    assert judge(rules, facts(dns_names=("*.corp.example",), common_name=None)) == []
    messages = judge(rules, facts(dns_names=("a.corp.example", "x.other.example"), common_name=None))
    assert messages == ["name outside the allowed domains: x.other.example"]
    assert judge(rules, facts(dns_names=(), ip_addresses=("192.0.2.1",), common_name=None)) == []


def test_allowed_domains_one_label_does_not_cover_a_deeper_wildcard() -> None:
    rules = [{"type": "allowed_domains", "patterns": ["*.example.com"]}]
    assert judge(rules, facts(dns_names=("*.a.example.com",), common_name=None))
    assert judge(rules, facts(dns_names=("*.example.com",), common_name=None)) == []


def test_allowed_issuers_by_id_or_name() -> None:
    by_name = [{"type": "allowed_issuers", "issuers": ["LOCAL"]}]
    by_id = [{"type": "allowed_issuers", "issuers": ["iss_1"]}]
    other = [{"type": "allowed_issuers", "issuers": ["prod-ca"], "environments": ["dev"]}]
    assert judge(by_name, FACTS) == []
    assert judge(by_id, FACTS) == []
    assert judge(other, FACTS) == ["issuer 'local' is not allowed in environment 'dev' (allowed: prod-ca)"]


@pytest.mark.parametrize(
    ("algorithm", "size", "message"),
    [
        ("ECDSA", 256, "ECDSA key of 256 bits is below the minimum of 384"),
        ("ECDSA", 384, None),
        ("RSA", 2048, "RSA key of 2048 bits is below the minimum of 3072"),
        ("RSA", 4096, None),
        ("Ed25519", 256, "key algorithm Ed25519 is not allowed (allowed: RSA, ECDSA)"),
    ],
)
def test_key_floor(algorithm: str, size: int, message: str | None) -> None:
    rules = [
        {"type": "key_floor", "algorithms": ["RSA", "ECDSA"], "min_rsa_bits": 3072, "min_ecdsa_bits": 384}
    ]
    assert judge(rules, facts(key_algorithm=algorithm, key_size=size)) == ([message] if message else [])


def test_max_lifetime() -> None:
    rules = [{"type": "max_lifetime", "max_days": 47}]
    assert judge(rules, facts(validity=timedelta(days=47))) == []
    assert judge(rules, facts(validity=timedelta(days=90))) == [
        "lifetime of 90 days exceeds the maximum of 47 days"
    ]
    assert judge(rules, facts(validity=timedelta(days=47, hours=12))) == [
        "lifetime of 47.50 days exceeds the maximum of 47 days"
    ]


def test_required_metadata() -> None:
    rules = [{"type": "required_metadata", "owner": True, "team": True, "tags": ["cost-center", "app"]}]
    assert judge(rules, FACTS) == ["missing an owner and a team and tags cost-center, app"]
    complete = facts(owner_id="own_1", team_id="team_1", tags={"cost-center": "42", "app": "shop"})
    assert judge(rules, complete) == []
    blank = facts(owner_id="own_1", team_id="team_1", tags={"cost-center": " ", "app": "shop"})
    assert judge(rules, blank) == ["missing tag cost-center"]


def test_max_sans_counts_names_and_addresses() -> None:
    rules = [{"type": "max_sans", "max": 2}]
    assert judge(rules, facts(dns_names=("a.example.com", "b.example.com"))) == []
    too_many = facts(dns_names=("a.example.com", "b.example.com"), ip_addresses=("192.0.2.1",))
    assert judge(rules, too_many) == ["3 subject alternative names exceed the maximum of 2"]


def test_wildcards() -> None:
    wildcard = facts(dns_names=("*.example.com",), common_name=None)
    assert judge([{"type": "wildcards"}], wildcard) == ["wildcard names are not allowed: *.example.com"]
    assert judge([{"type": "wildcards", "allowed": True}], wildcard) == []
    assert judge([{"type": "wildcards"}], FACTS) == []


def test_environment_filter_is_case_insensitive_and_empty_means_all() -> None:
    rules = [{"type": "wildcards", "environments": ["Prod", "staging"]}]
    wildcard = facts(dns_names=("*.example.com",), common_name=None)
    assert judge(rules, replace(wildcard, environment="dev")) == []
    assert judge(rules, replace(wildcard, environment="PROD"))
    assert judge([{"type": "wildcards"}], replace(wildcard, environment=""))
    unset_only = [{"type": "wildcards", "environments": [""]}]
    assert judge(unset_only, replace(wildcard, environment=""))
    assert judge(unset_only, wildcard) == []


def test_warn_and_block_outcomes_name_policy_and_rule() -> None:
    policy = Policy(
        id="pol_9",
        name="prod-names",
        rules=parse_rules(
            [
                {"type": "max_sans", "max": 10},
                {"type": "wildcards", "mode": "warn"},
                {"type": "denied_domains", "patterns": ["**.example.com"]},
            ]
        ),
    )
    outcomes = evaluate([policy], facts(dns_names=("*.example.com",), common_name=None))
    assert [o.label for o in outcomes] == [
        'policy "prod-names" rule 2 (wildcards)',
        'policy "prod-names" rule 3 (denied_domains)',
    ]
    assert [o.label for o in blocking(outcomes)] == ['policy "prod-names" rule 3 (denied_domains)']
    (warning,) = warnings(outcomes)
    assert warning.as_dict() == {
        "policy": "prod-names",
        "policy_id": "pol_9",
        "rule": 2,
        "type": "wildcards",
        "mode": "warn",
        "message": 'policy "prod-names" rule 2 (wildcards): wildcard names are not allowed: *.example.com',
    }


def test_every_policy_is_evaluated_in_order_without_short_circuit() -> None:
    first = Policy(id="a", name="a", rules=parse_rules([{"type": "max_sans", "max": 1}]))
    second = Policy(id="b", name="b", rules=parse_rules([{"type": "max_lifetime", "max_days": 30}]))
    many = facts(dns_names=("a.example.com", "b.example.com"))
    assert [o.policy_name for o in evaluate([first, second], many)] == ["a", "b"]
    assert evaluate([], many) == []


@pytest.mark.parametrize(
    ("rules", "fragment"),
    [
        ([{"type": "nope"}], "rule 1: Input tag 'nope'"),
        ([{"type": "key_floor"}], "rule 1 (key_floor): Value error, give algorithms"),
        ([{"type": "key_floor", "min_rsa_bits": 512}], "rule 1 (key_floor) min_rsa_bits"),
        ([{"type": "max_sans", "max": 3, "colour": "blue"}], "rule 1 (max_sans) colour: Extra inputs"),
        (
            [{"type": "wildcards"}, {"type": "denied_domains", "patterns": []}],
            "rule 2 (denied_domains) patterns",
        ),
        ([{"type": "denied_domains", "patterns": ["a.*.com"]}], "is not a DNS label"),
        ([{"type": "required_metadata"}], "require owner, team or at least one tag"),
        ([{"type": "wildcards", "mode": "audit"}], "rule 1 (wildcards) mode"),
        ({"type": "wildcards"}, "rules: Input should be a valid list"),
        ([{"type": "max_sans", "max": 1}] * 101, "at most 100 rules"),
    ],
)
def test_bad_rules_are_refused_with_the_rule_named(rules: Any, fragment: str) -> None:
    with pytest.raises(RuleError, match=re.escape(fragment)):
        parse_rules(rules)


def test_rules_and_facts_are_immutable() -> None:
    rule = AllowedDomains(patterns=("example.com",))
    with pytest.raises(ValueError, match="frozen"):
        rule.mode = "warn"  # type: ignore[misc]
    with pytest.raises(TypeError):
        FACTS.tags["x"] = "y"  # type: ignore[index]
