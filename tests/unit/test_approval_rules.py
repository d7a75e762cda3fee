"""Pure parts of four-eyes approval: the decision rules, and an issue request surviving the JSON payload."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest

from certctl.domain.approvals import (
    ApprovalStatus,
    expiry_of,
    is_expired,
    is_self_decision,
    refusal_for_state,
)
from certctl.services.approval_runs import issue_request_from
from certctl.services.holds import changed_fields, issue_payload
from certctl.services.issuance import IssueRequest

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_expiry_and_self_decision() -> None:
    expires = expiry_of(NOW, timedelta(hours=72))
    assert expires == NOW + timedelta(days=3)
    assert not is_expired(expires, NOW + timedelta(hours=71, minutes=59))
    assert is_expired(expires, expires)
    with pytest.raises(ValueError, match="positive"):
        expiry_of(NOW, timedelta(0))
    assert is_self_decision(requested_by_id="key_a", decided_by_id="key_a")
    assert not is_self_decision(requested_by_id="key_a", decided_by_id="key_b")


def test_only_pending_requests_can_be_decided() -> None:
    assert refusal_for_state(ApprovalStatus.PENDING) is None
    assert refusal_for_state("expired") == "it expired before anyone decided"
    assert refusal_for_state("rejected") == "it was already rejected"
    assert refusal_for_state("approved") == "it was already decided (approved)"
    assert refusal_for_state("failed") == "it was already decided (failed)"


def test_an_issue_request_round_trips_through_the_json_payload() -> None:
    request = IssueRequest(
        name="web",
        issuer="local",
        profile="gated",
        csr_pem="-----BEGIN CERTIFICATE REQUEST-----\n...\n-----END CERTIFICATE REQUEST-----\n",
        key_type="ecdsa-p384",
        common_name="web.example.com",
        sans=("web.example.com", "10.0.0.1"),
        validity=timedelta(days=30, seconds=5),
        ekus=("serverAuth", "clientAuth"),
        owner_id="own_1",
        team_id="team_1",
        tags={"app": "web"},
        environment="prod",
        auto_renew=False,
        source="cli",
    )
    stored = json.loads(json.dumps(issue_payload(request, profile_id="prf_1", issuer_id="iss_1")))
    restored = issue_request_from(stored)
    assert restored == dataclasses.replace(request, profile="prf_1", issuer="iss_1")
    every_field = {f.name for f in dataclasses.fields(IssueRequest)}
    derived = {"validity", "parsed_csr"}  # stored as validity_seconds; csr_pem as the caller parsed it
    assert every_field - derived <= set(stored), "a new IssueRequest field must be added to the payload"


def test_defaults_survive_the_payload_too() -> None:
    request = IssueRequest(name="n", issuer="i", profile="p")
    restored = issue_request_from(
        json.loads(json.dumps(issue_payload(request, profile_id="p", issuer_id="i")))
    )
    assert restored == request


def test_changed_fields_ignore_the_update_stamp() -> None:
    current = {"name": "a", "description": "x", "updated_at": NOW}
    assert changed_fields(current, {"name": "a", "description": "x", "updated_at": NOW + timedelta(1)}) == []
    assert changed_fields(current, {"description": "y", "name": "b"}) == ["description", "name"]
