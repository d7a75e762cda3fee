"""Renewal timing and job backoff (pure rules in ``certctl.domain.renewal``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from certctl.domain.jobs import renewal_dedup_key
from certctl.domain.renewal import (
    Backoff,
    RenewalPolicy,
    SuggestedWindow,
    next_attempt_at,
    renewal_due_at,
    unit_interval,
)

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NO_JITTER = RenewalPolicy(jitter_fraction=0)


@pytest.mark.parametrize(
    ("lifetime", "due_after"),
    [
        (timedelta(days=90), timedelta(days=60)),
        (timedelta(days=47), timedelta(days=47) * 2 / 3),
        (timedelta(days=6), timedelta(days=4)),
        (timedelta(minutes=15), timedelta(minutes=10)),
    ],
)
def test_two_thirds_of_the_lifetime_by_default(lifetime: timedelta, due_after: timedelta) -> None:
    due = renewal_due_at(
        not_before=START, not_after=START + lifetime, policy=NO_JITTER, certificate_id="crt_a"
    )
    assert due == START + due_after


def test_fixed_window_before_expiry_wins_over_the_fraction() -> None:
    policy = RenewalPolicy(window=timedelta(days=30), jitter_fraction=0)
    due = renewal_due_at(
        not_before=START, not_after=START + timedelta(days=90), policy=policy, certificate_id="crt_a"
    )
    assert due == START + timedelta(days=60 + 0)
    short = renewal_due_at(
        not_before=START, not_after=START + timedelta(days=10), policy=policy, certificate_id="crt_a"
    )
    assert short == START, "a window longer than the lifetime renews at once, never before notBefore"


def test_jitter_is_bounded_deterministic_and_spread() -> None:
    policy = RenewalPolicy(jitter_fraction=0.1)
    not_after = START + timedelta(days=90)
    base = START + timedelta(days=60)
    earliest = base - (not_after - base) * 0.1
    ids = [f"crt_{n:05d}" for n in range(2000)]
    dues = [
        renewal_due_at(not_before=START, not_after=not_after, policy=policy, certificate_id=i) for i in ids
    ]
    assert all(d is not None and earliest <= d <= base for d in dues)
    again = renewal_due_at(not_before=START, not_after=not_after, policy=policy, certificate_id=ids[7])
    assert again == dues[7]
    spread = [d for d in dues if d is not None]
    assert len(set(spread)) > 1990
    hours = {(base - d) // timedelta(hours=1) for d in spread}
    assert len(hours) >= 70, "a fleet issued together is spread over the whole jitter range (72 h)"


def test_ari_window_picks_a_stable_point_inside_it() -> None:
    window = SuggestedWindow(start=START + timedelta(days=50), end=START + timedelta(days=52))
    dues = {
        renewal_due_at(
            not_before=START,
            not_after=START + timedelta(days=90),
            policy=RenewalPolicy(),
            certificate_id=f"crt_{n}",
            suggested_window=window,
        )
        for n in range(100)
    }
    assert all(d is not None and window.start <= d < window.end for d in dues)
    assert len(dues) == 100


def test_auto_renew_off_means_never_due() -> None:
    policy = RenewalPolicy(auto_renew=False)
    assert (
        renewal_due_at(
            not_before=START, not_after=START + timedelta(days=90), policy=policy, certificate_id="c"
        )
        is None
    )


def test_unit_interval_is_in_range() -> None:
    values = [unit_interval(f"id{n}") for n in range(1000)]
    assert all(0 <= v < 1 for v in values)
    assert 0.4 < sum(values) / len(values) < 0.6


@pytest.mark.parametrize(
    "policy",
    [
        {"lifetime_fraction": 0},
        {"lifetime_fraction": 1},
        {"window": timedelta(0)},
        {"jitter_fraction": -0.1},
        {"jitter_fraction": 0.6},
    ],
)
def test_nonsense_policies_are_refused(policy: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RenewalPolicy(**policy)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_the_cap_then_gives_up() -> None:
    backoff = Backoff(base=timedelta(seconds=30), cap=timedelta(minutes=5), max_attempts=6)
    delays = [backoff.delay(n) for n in range(1, 7)]
    assert delays == [timedelta(seconds=s) for s in (30, 60, 120, 240, 300, 300)]
    assert backoff.next_attempt_at(attempt=2, now=START) == START + timedelta(seconds=60)
    assert backoff.next_attempt_at(attempt=6, now=START) is None
    assert next_attempt_at(1, START) == START + timedelta(seconds=30)
    assert Backoff().delay(10_000) == timedelta(hours=1)
    with pytest.raises(ValueError, match="count from 1"):
        backoff.delay(0)


def test_one_dedup_key_per_certificate_version() -> None:
    assert renewal_dedup_key("crt_1", "ver_1") == "renewal:crt_1:ver_1"
    assert renewal_dedup_key("crt_1", "ver_2") != renewal_dedup_key("crt_1", "ver_1")
