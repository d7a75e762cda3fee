"""A profile's renewal rule and expiry thresholds, read from the stored JSON shape (pure rules)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from certctl.domain.notifications import DEFAULT_THRESHOLDS
from certctl.domain.profiles import expiry_thresholds, renewal_policy
from certctl.domain.renewal import DEFAULT_POLICY, RenewalPolicy, policy_for_lifetime, renewal_due_at
from certctl.services.profiles import default_rules, profile_from_row

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_no_rule_is_the_default_policy() -> None:
    assert renewal_policy(None) is DEFAULT_POLICY
    assert renewal_policy({}) == DEFAULT_POLICY
    assert renewal_policy({"mode": "fraction"}) == DEFAULT_POLICY


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"fraction": 0.5}, RenewalPolicy(lifetime_fraction=0.5)),
        (
            {"mode": "fraction", "fraction": 0.8, "jitter": 0},
            RenewalPolicy(lifetime_fraction=0.8, jitter_fraction=0),
        ),
        ({"mode": "window", "window_days": 20}, RenewalPolicy(window=timedelta(days=20))),
        (
            {"mode": "window", "window_seconds": 300, "jitter": 0.25},
            RenewalPolicy(window=timedelta(seconds=300), jitter_fraction=0.25),
        ),
    ],
)
def test_rules_become_policies(rule: dict[str, Any], expected: RenewalPolicy) -> None:
    assert renewal_policy(rule) == expected


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"mode": "sometimes"}, "renewal.mode must be one of fraction, window"),
        ({"fraction": 1}, "renewal.fraction must be greater than 0 and less than 1"),
        ({"fraction": 0}, "renewal.fraction must be greater than 0 and less than 1"),
        ({"fraction": "half"}, "renewal.fraction must be a number"),
        ({"jitter": 0.6}, "renewal.jitter must be between 0 and 0.5"),
        ({"jitter": -0.1}, "renewal.jitter must be between 0 and 0.5"),
        ({"mode": "window"}, "needs exactly one of window_days or window_seconds"),
        ({"mode": "window", "window_days": 2, "window_seconds": 60}, "needs exactly one of"),
        ({"mode": "window", "window_days": 0}, "renewal.window_days must be a positive whole number"),
        ({"mode": "window", "window_days": 1.5}, "renewal.window_days must be a positive whole number"),
        (
            {"mode": "window", "window_days": 3, "fraction": 0.5},
            "renewal.fraction applies only to mode 'fraction'",
        ),
        ({"window_days": 3}, "renewal.window_days applies only to mode 'window'"),
        ({"mode": "window", "window_days": 3, "every": 1}, "unknown renewal field(s): every"),
    ],
)
def test_bad_rules_name_the_field(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        renewal_policy(rule)


def test_thresholds_are_checked_and_stored_widest_first() -> None:
    assert expiry_thresholds([7, 30, 0, 14]) == (30, 14, 7, 0)
    assert expiry_thresholds([]) == ()
    assert expiry_thresholds(list(range(10))) == tuple(range(9, -1, -1))
    for bad, message in (
        ([7, 7], "distinct"),
        ([-1], "from 0 to 365"),
        ([366], "from 0 to 365"),
        ([True], "from 0 to 365"),
        (list(range(11)), "at most 10"),
    ):
        with pytest.raises(ValueError, match=message):
            expiry_thresholds(bad)


def test_a_window_that_does_not_fit_the_lifetime_renews_by_the_fraction() -> None:
    window = RenewalPolicy(window=timedelta(days=20), jitter_fraction=0)
    assert policy_for_lifetime(window, timedelta(days=90)) is window
    fitted = policy_for_lifetime(window, timedelta(days=20))
    assert fitted == RenewalPolicy(jitter_fraction=0)
    due = renewal_due_at(
        not_before=START, not_after=START + timedelta(days=9), policy=fitted, certificate_id="crt_a"
    )
    assert due == START + timedelta(days=6), "2/3 of the lifetime, not at once (which would loop)"
    assert policy_for_lifetime(DEFAULT_POLICY, timedelta(minutes=5)) is DEFAULT_POLICY


def test_a_stored_profile_without_the_new_rules_keeps_the_defaults() -> None:
    profile = profile_from_row({"name": "old", "rules": default_rules()})
    assert profile.renewal is DEFAULT_POLICY
    assert profile.expiry_thresholds_days == DEFAULT_THRESHOLDS
    rules = default_rules(renewal={"mode": "window", "window_days": 10}, expiry_thresholds_days=[60, 1])
    profile = profile_from_row({"name": "new", "rules": rules})
    assert profile.renewal == RenewalPolicy(window=timedelta(days=10))
    assert profile.expiry_thresholds_days == (60, 1)
    silent = profile_from_row({"name": "quiet", "rules": default_rules(expiry_thresholds_days=[])})
    assert silent.expiry_thresholds_days == ()
    with pytest.raises(ValueError, match="unknown profile rules: colour"):
        default_rules(colour="blue")
