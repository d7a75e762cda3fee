"""Per-profile renewal timing and expiry thresholds, and held renewals that end without a renewal, on
SQLite and PostgreSQL through the real API, scanner and worker."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from certctl.domain.clock import FrozenClock
from certctl.domain.renewal import RenewalPolicy, renewal_due_at
from certctl.scheduler.renewal_scan import RenewalScanner
from certctl.scheduler.runner import job_worker
from certctl.services.audit import SYSTEM
from certctl.services.issuance import Issued, IssueRequest
from support.apps import ApiHarness
from support.csrs import counts
from support.receivers import free_port
from support.renewals import freeze
from support.seed import DEFAULT_RULES

PROBLEM = "urn:certctl:problem:"
PROFILES = "/api/v1/profiles"
NO_JITTER = {"jitter": 0}


def make_profile(api: ApiHarness, name: str, **rules: Any) -> dict[str, Any]:
    response = api.post(PROFILES, json={"name": name, "rules": DEFAULT_RULES | rules})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def issue_under(api: ApiHarness, name: str, profile: str, validity: timedelta) -> dict[str, Any]:
    request = IssueRequest(
        name=name,
        issuer="local",
        profile=profile,
        key_type="ecdsa-p256",
        sans=(f"{name}.example.com",),
        validity=validity,
    )
    issued = api.run(lambda: api.services.issuance.issue(request=request, actor=SYSTEM))
    assert isinstance(issued, Issued)
    return issued.certificate


def certificate(api: ApiHarness, certificate_id: str) -> dict[str, Any]:
    found = api.get(f"/api/v1/certificates/{certificate_id}")
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


def scan(api: ApiHarness, clock: FrozenClock) -> int:
    return api.run(lambda: RenewalScanner(api.services.renewals).tick(now=clock.at)).created


def audit_events(api: ApiHarness, action: str) -> list[dict[str, Any]]:
    response = api.get("/api/v1/audit", params={"action": action})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def test_each_profile_schedules_renewal_by_its_own_policy(api: ApiHarness) -> None:
    clock = freeze(api)
    make_profile(api, "window-20d", renewal={"mode": "window", "window_days": 20, **NO_JITTER})
    make_profile(api, "half-life", renewal={"mode": "fraction", "fraction": 0.5, **NO_JITTER})
    make_profile(api, "short-window", renewal={"mode": "window", "window_seconds": 120, **NO_JITTER})
    lifetime = timedelta(days=90)
    window = issue_under(api, "window", "window-20d", lifetime)
    half = issue_under(api, "half", "half-life", lifetime)
    brief = issue_under(api, "brief", "short-window", timedelta(minutes=15))
    plain = issue_under(api, "plain", "default", lifetime)
    not_before = clock.at - timedelta(minutes=1)
    assert window["renewal_due_at"] == window["not_after"] - timedelta(days=20)
    assert half["renewal_due_at"] == not_before + timedelta(days=45)
    assert brief["renewal_due_at"] == brief["not_after"] - timedelta(minutes=2)
    assert plain["renewal_due_at"] == renewal_due_at(
        not_before=not_before,
        not_after=plain["not_after"],
        policy=RenewalPolicy(),
        certificate_id=plain["id"],
    )
    clock.at = brief["renewal_due_at"] - timedelta(seconds=1)
    assert scan(api, clock) == 0
    clock.at = brief["renewal_due_at"]
    assert scan(api, clock) == 1
    clock.at = half["renewal_due_at"]
    assert scan(api, clock) == 1
    assert certificate(api, half["id"])["status"] == "RenewalInProgress"
    clock.at = plain["renewal_due_at"]
    assert scan(api, clock) == 1
    assert certificate(api, window["id"])["status"] == "Active"
    clock.at = window["renewal_due_at"]
    assert scan(api, clock) == 1


def test_a_window_longer_than_the_lifetime_renews_by_the_fraction(api: ApiHarness) -> None:
    clock = freeze(api)
    make_profile(api, "wide-window", renewal={"mode": "window", "window_days": 30, **NO_JITTER})
    short = issue_under(api, "short", "wide-window", timedelta(days=9))
    assert short["renewal_due_at"] == clock.at - timedelta(minutes=1) + timedelta(days=6)
    assert scan(api, clock) == 0, "not due the moment it is issued (which would renew it in a loop)"


def test_a_policy_change_applies_to_versions_issued_afterwards(api: ApiHarness) -> None:
    freeze(api)
    make_profile(api, "changing", renewal={"fraction": 0.5, **NO_JITTER})
    record = issue_under(api, "moving", "changing", timedelta(days=40))
    first_due = record["renewal_due_at"]
    changed = api.patch(
        f"{PROFILES}/changing",
        json={"rules": DEFAULT_RULES | {"renewal": {"mode": "window", "window_days": 5, **NO_JITTER}}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["rules"]["renewal"] == {"mode": "window", "window_days": 5, "jitter": 0}
    assert datetime.fromisoformat(certificate(api, record["id"])["renewal_due_at"]) == first_due
    renewed = api.post(f"/api/v1/certificates/{record['id']}/renew")
    assert renewed.status_code == 200, renewed.text
    after = certificate(api, record["id"])
    not_after = datetime.fromisoformat(after["current_version"]["not_after"])
    assert datetime.fromisoformat(after["renewal_due_at"]) == not_after - timedelta(days=5)


BAD_RULES = [
    ("fraction of one", {"renewal": {"fraction": 1.0}}, "rules.renewal.fraction"),
    ("jitter too wide", {"renewal": {"jitter": 0.9}}, "rules.renewal.jitter"),
    ("unknown mode", {"renewal": {"mode": "weekly"}}, "rules.renewal.mode"),
    ("window without a length", {"renewal": {"mode": "window"}}, "needs exactly one of window_days"),
    ("window in fraction mode", {"renewal": {"window_days": 3}}, "applies only to mode 'window'"),
    ("fraction in window mode", {"renewal": {"mode": "window", "window_days": 3, "fraction": 0.5}}, "only"),
    ("window past the longest lifetime", {"renewal": {"mode": "window", "window_days": 400}}, "shorter"),
    ("unknown renewal field", {"renewal": {"mode": "window", "window_days": 3, "every": 2}}, "every"),
    ("repeated threshold", {"expiry_thresholds_days": [7, 7]}, "distinct"),
    ("negative threshold", {"expiry_thresholds_days": [-1]}, "from 0 to 365"),
    ("eleven thresholds", {"expiry_thresholds_days": list(range(11))}, "rules.expiry_thresholds_days"),
]


@pytest.mark.parametrize(("label", "rules", "detail"), BAD_RULES, ids=[case[0] for case in BAD_RULES])
def test_bad_renewal_rules_are_refused_and_nothing_is_written(
    api: ApiHarness, label: str, rules: dict[str, Any], detail: str
) -> None:
    existing = make_profile(api, "kept", renewal={"fraction": 0.5})
    before = api.run(lambda: counts(api.services.context.engine))
    profiles_before = api.get(PROFILES).json()["items"]
    for response in (
        api.post(PROFILES, json={"name": "refused", "rules": DEFAULT_RULES | rules}),
        api.patch(f"{PROFILES}/kept", json={"rules": DEFAULT_RULES | rules}),
    ):
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        document = response.json()
        assert document["type"] == PROBLEM + "validation-error"
        assert detail in document["detail"], document["detail"]
    assert api.run(lambda: counts(api.services.context.engine)) == before
    assert api.get(PROFILES).json()["items"] == profiles_before
    assert api.get(f"{PROFILES}/kept").json()["rules"] == existing["rules"]


def test_thresholds_are_stored_widest_first_and_a_partial_rule_set_takes_defaults(api: ApiHarness) -> None:
    created = make_profile(api, "warned", expiry_thresholds_days=[7, 45, 0])
    assert created["rules"]["expiry_thresholds_days"] == [45, 7, 0]
    assert "renewal" not in created["rules"], "an optional rule left out is not stored"
    patched = api.patch(f"{PROFILES}/warned", json={"rules": {"expiry_thresholds_days": [3]}})
    assert patched.status_code == 200, patched.text
    rules = api.get(f"{PROFILES}/warned").json()["rules"]
    assert rules["expiry_thresholds_days"] == [3]
    assert rules["allowed_key_algorithms"] == ["ECDSA", "RSA"] and rules["max_ttl_seconds"] == 397 * 86400
    issued = api.post(
        "/api/v1/certificates",
        json={"name": "after-patch", "issuer": "local", "profile": "warned", "common_name": "a.example.com"},
    )
    assert issued.status_code == 201, issued.text


def test_expiry_warnings_follow_the_certificates_profile(api: ApiHarness) -> None:
    clock = freeze(api)
    producer = api.services.notification_producer
    hook = api.post(
        "/api/v1/notifications/channels",
        json={
            "name": "chat",
            "type": "slack",
            "secrets": {"webhook_url": f"http://127.0.0.1:{free_port()}/x"},
        },
    )
    assert hook.status_code == 201, hook.text
    rule = {"name": "expiry", "channel_ids": [hook.json()["id"]], "event_types": ["certificate.expiring"]}
    assert api.post("/api/v1/notifications/rules", json=rule).status_code == 201
    make_profile(api, "early", expiry_thresholds_days=[45, 3])
    make_profile(api, "silent", expiry_thresholds_days=[])
    early = issue_under(api, "early", "early", timedelta(days=60))
    plain = issue_under(api, "plain", "default", timedelta(days=60))
    issue_under(api, "silent", "silent", timedelta(days=60))
    start = clock.at

    def scan_on(day: int) -> int:
        return api.run(lambda: producer.scan_expiry(now=start + timedelta(days=day)))

    fired = [scan_on(day) for day in (0, 15, 15, 30, 46, 53, 57, 60, 61)]
    assert fired == [0, 1, 0, 1, 1, 1, 1, 1, 0]
    listed = api.get("/api/v1/notifications/deliveries", params={"limit": 500}).json()["items"]
    by_certificate: dict[str, list[int]] = {}
    for delivery in listed:
        by_certificate.setdefault(delivery["certificate_id"], []).append(
            int(delivery["event_key"].rsplit(":", 1)[1])
        )
    assert sorted(by_certificate[early["id"]]) == [3, 45]
    assert sorted(by_certificate[plain["id"]]) == [0, 7, 14, 30]
    assert set(by_certificate) == {early["id"], plain["id"]}


def test_a_held_renewal_that_ends_without_renewing_releases_the_certificate(api: ApiHarness) -> None:
    clock = freeze(api)
    make_profile(api, "gated-later")
    first = issue_under(api, "first", "gated-later", timedelta(days=90))
    second = issue_under(api, "second", "gated-later", timedelta(days=90))
    third = issue_under(api, "third", "gated-later", timedelta(days=90))
    switched = api.patch(
        f"{PROFILES}/gated-later", json={"rules": DEFAULT_RULES | {"requires_approval": True}}
    )
    assert switched.status_code == 200, switched.text
    clock.at += timedelta(days=61)
    assert scan(api, clock) == 3
    worker = job_worker(api.services, name="held-worker")
    while api.run(worker.run_once):
        pass
    approvals = {}
    for record in (first, second, third):
        [job] = api.get("/api/v1/jobs", params={"certificate": record["id"]}).json()["items"]
        assert job["result"]["outcome"] == "held"
        approvals[record["id"]] = job["result"]["approval_id"]
        assert certificate(api, record["id"])["status"] == "RenewalInProgress"

    approver = api.post("/api/v1/keys", json={"name": "approver", "roles": ["admin"]}).json()["secret"]
    rejected = api.post(
        f"/api/v1/approvals/{approvals[first['id']]}/reject", key=approver, json={"note": "no"}
    )
    assert rejected.status_code == 200, rejected.text
    released = certificate(api, first["id"])
    assert released["status"] == "Expiring", "29 days left and due: what its validity gives"
    assert released["renewal_due_at"] is None, "this version leaves the automatic scan"
    assert released["current_version_id"] == first["current_version_id"]
    [event] = audit_events(api, "certificate.renewal_released")
    assert event["actor"] == "approver" and event["resource_id"] == first["id"]
    assert event["details"] == {
        "approval_id": approvals[first["id"]],
        "approval": "rejected",
        "status": "Expiring",
    }
    assert certificate(api, second["id"])["status"] == "RenewalInProgress"

    assert api.patch("/api/v1/issuers/local", json={"enabled": False}).status_code == 200
    failed = api.post(f"/api/v1/approvals/{approvals[third['id']]}/approve", key=approver)
    assert failed.status_code == 409 and "disabled" in failed.json()["detail"]
    assert api.patch("/api/v1/issuers/local", json={"enabled": True}).status_code == 200
    assert certificate(api, third["id"])["status"] == "Expiring"
    [event] = [
        e for e in audit_events(api, "certificate.renewal_released") if e["resource_id"] == third["id"]
    ]
    assert event["actor"] == "approver" and event["details"]["approval"] == "failed"

    clock.at += timedelta(days=4)
    assert api.run(api.services.approvals.expire_due) == 1
    assert certificate(api, second["id"])["status"] == "Expiring"
    events = [
        e for e in audit_events(api, "certificate.renewal_released") if e["resource_id"] == second["id"]
    ]
    assert len(events) == 1
    assert events[0]["actor"] == "system"
    assert events[0]["details"]["approval"] == "expired"
    assert events[0]["details"]["approval_id"] == approvals[second["id"]]
    assert scan(api, clock) == 0
    again = api.post(f"/api/v1/certificates/{second['id']}/renew")
    assert again.status_code == 202, "renewing by hand still works (held again under this profile)"
