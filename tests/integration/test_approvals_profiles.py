"""Changing or deleting an approval-tier profile is itself held for approval, so the flip-flop bypass (turn
approval off, issue, turn it back on) does not work; making a profile approval-tier takes effect at once."""

from __future__ import annotations

from typing import Any

import pytest

from certctl.errors import Conflict
from certctl.services.audit import SYSTEM
from support.apps import ApiHarness
from support.seed import DEFAULT_RULES

PROBLEM = "urn:certctl:problem:"
APPROVALS = "/api/v1/approvals"
GATED_RULES = DEFAULT_RULES | {"requires_approval": True}


def make_profile(api: ApiHarness, name: str, rules: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/v1/profiles", json={"name": name, "rules": rules})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def second_admin(api: ApiHarness) -> str:
    response = api.post("/api/v1/keys", json={"name": "approver", "roles": ["admin"]})
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


def issue(api: ApiHarness, name: str, profile: str = "gated") -> Any:
    body = {"name": name, "issuer": "local", "profile": profile, "common_name": name}
    return api.post("/api/v1/certificates", json=body)


def events(api: ApiHarness, action: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.get("/api/v1/audit", params={"action": action}).json()["items"]
    return found


def test_the_flip_flop_is_held_until_someone_else_approves(api: ApiHarness) -> None:
    profile = make_profile(api, "gated", GATED_RULES)
    approver = second_admin(api)
    off = api.patch("/api/v1/profiles/gated", json={"rules": DEFAULT_RULES})
    assert off.status_code == 202, off.text
    change = off.json()["approval"]
    assert change["kind"] == "profile.update" and change["resource_id"] == profile["id"]
    assert "turns approval off" in change["summary"]
    assert api.get("/api/v1/profiles/gated").json()["rules"]["requires_approval"] is True
    still_held = issue(api, "flip.example.com")
    assert still_held.status_code == 202, still_held.text
    assert api.get("/api/v1/certificates/flip.example.com").status_code == 404
    assert api.post(f"{APPROVALS}/{change['id']}/approve").status_code == 403
    decided = api.post(f"{APPROVALS}/{change['id']}/approve", key=approver, json={"note": "retiring"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["result"]["fields"] == ["rules"]
    assert api.get("/api/v1/profiles/gated").json()["rules"]["requires_approval"] is False
    updated = events(api, "profile.update")
    assert updated[0]["actor"] == "test-admin"
    assert updated[0]["details"]["approved_by"] == "approver"
    assert updated[0]["details"]["approval_id"] == change["id"]
    assert issue(api, "after.example.com").status_code == 201


def test_turning_approval_on_takes_effect_at_once(api: ApiHarness) -> None:
    make_profile(api, "plain", DEFAULT_RULES)
    on = api.patch("/api/v1/profiles/plain", json={"rules": GATED_RULES})
    assert on.status_code == 200 and on.json()["rules"]["requires_approval"] is True
    assert issue(api, "now-gated.example.com", profile="plain").status_code == 202
    assert events(api, "approval.request")[0]["details"]["kind"] == "certificate.issue"


def test_any_change_of_an_approval_tier_profile_is_held_but_a_no_op_is_not(api: ApiHarness) -> None:
    make_profile(api, "gated", GATED_RULES)
    renamed = api.patch("/api/v1/profiles/gated", json={"name": "gated-2", "description": "new"})
    assert renamed.status_code == 202
    assert "description, name" in renamed.json()["approval"]["summary"]
    assert "turns approval off" not in renamed.json()["approval"]["summary"]
    assert api.get("/api/v1/profiles/gated").status_code == 200
    same = api.patch("/api/v1/profiles/gated", json={"rules": GATED_RULES})
    assert same.status_code == 200 and same.json()["name"] == "gated"
    make_profile(api, "taken", DEFAULT_RULES)
    clash = api.patch("/api/v1/profiles/gated", json={"name": "taken"})
    assert clash.status_code == 409 and clash.json()["type"] == PROBLEM + "conflict"
    assert len(api.get(APPROVALS).json()["items"]) == 1


def test_deleting_an_approval_tier_profile_is_held(api: ApiHarness) -> None:
    profile = make_profile(api, "gated", GATED_RULES)
    held = api.delete("/api/v1/profiles/gated")
    assert held.status_code == 202, held.text
    change = held.json()["approval"]
    assert change["kind"] == "profile.delete" and change["summary"] == "delete profile 'gated'"
    assert api.get("/api/v1/profiles/gated").status_code == 200
    decided = api.post(f"{APPROVALS}/{change['id']}/approve", key=second_admin(api))
    assert decided.status_code == 200, decided.text
    assert api.get(f"/api/v1/profiles/{profile['id']}").status_code == 404
    deleted = events(api, "profile.delete")
    assert deleted[0]["actor"] == "test-admin" and deleted[0]["details"]["approved_by"] == "approver"


def test_deleting_a_used_approval_tier_profile_is_refused_at_once(api: ApiHarness) -> None:
    make_profile(api, "gated", DEFAULT_RULES)
    assert issue(api, "user.example.com").status_code == 201
    assert api.patch("/api/v1/profiles/gated", json={"rules": GATED_RULES}).status_code == 200
    refused = api.delete("/api/v1/profiles/gated")
    assert refused.status_code == 409 and refused.json()["type"] == PROBLEM + "conflict"
    assert api.get(APPROVALS).json()["items"] == []


def test_the_catalogue_service_refuses_unapproved_changes_of_an_approval_tier_profile(
    api: ApiHarness,
) -> None:
    """The backstop below the routes: even a caller that skips the hold cannot change the profile."""
    make_profile(api, "gated", GATED_RULES)
    with pytest.raises(Conflict, match="requires approval"):
        api.run(
            lambda: api.services.profiles.update(ref="gated", values={"rules": DEFAULT_RULES}, actor=SYSTEM)
        )
    assert api.get("/api/v1/profiles/gated").json()["rules"]["requires_approval"] is True
    unchanged = api.run(
        lambda: api.services.profiles.update(ref="gated", values={"description": ""}, actor=SYSTEM)
    )
    assert unchanged["rules"]["requires_approval"] is True
