"""Four-eyes approval through the API, on SQLite and PostgreSQL: held issuance and renewal, decisions by a
second principal, self-approval refused, expiry, failures at run time, filters, and the audit trail."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl.domain.clock import FrozenClock
from certctl.domain.rbac import global_access
from certctl.errors import Conflict
from certctl.pki.csr import build_csr
from certctl.pki.keys import generate_private_key
from certctl.services.audit import SYSTEM, Actor
from certctl.services.holds import Held
from certctl.services.issuance import IssueRequest
from support.apps import ApiHarness
from support.seed import DEFAULT_RULES

PROBLEM = "urn:certctl:problem:"
APPROVALS = "/api/v1/approvals"


def gated_profile(api: ApiHarness, name: str = "gated") -> dict[str, Any]:
    rules = DEFAULT_RULES | {"requires_approval": True}
    response = api.post("/api/v1/profiles", json={"name": name, "rules": rules})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def second_admin(api: ApiHarness, name: str = "approver") -> str:
    response = api.post("/api/v1/keys", json={"name": name, "roles": ["admin"]})
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])


def request_issue(api: ApiHarness, name: str, *, profile: str = "gated", **extra: Any) -> Any:
    body = {"name": name, "issuer": "local", "profile": profile, "common_name": name} | extra
    return api.post("/api/v1/certificates", json=body)


def held(api: ApiHarness, name: str, **extra: Any) -> dict[str, Any]:
    response = request_issue(api, name, **extra)
    assert response.status_code == 202, response.text
    approval: dict[str, Any] = response.json()["approval"]
    return approval


def events(api: ApiHarness, action: str) -> list[dict[str, Any]]:
    response = api.get("/api/v1/audit", params={"action": action})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def certificate_names(api: ApiHarness) -> list[str]:
    return [c["name"] for c in api.get("/api/v1/certificates", params={"limit": 500}).json()["items"]]


def test_issuing_under_an_approval_tier_profile_is_held_and_issues_nothing(api: ApiHarness) -> None:
    profile = gated_profile(api)
    approval = held(api, "held.example.com", tags={"app": "web"}, validity_days=30)
    assert approval["id"].startswith("apr_")
    assert approval["status"] == "pending"
    assert approval["kind"] == "certificate.issue"
    assert approval["profile_id"] == profile["id"]
    assert approval["requested_by"] == "test-admin"
    assert "held.example.com" in approval["summary"] and "'gated'" in approval["summary"]
    request = approval["payload"]["request"]
    assert request["validity_seconds"] == 30 * 86400 and request["tags"] == {"app": "web"}
    assert request["profile"] == profile["id"]
    assert "held.example.com" not in certificate_names(api)
    assert api.get(f"{APPROVALS}/{approval['id']}").json()["status"] == "pending"
    requested = events(api, "approval.request")
    assert [e["resource_id"] for e in requested] == [approval["id"]]
    assert requested[0]["actor"] == "test-admin"


def test_the_requester_cannot_approve_its_own_request(api: ApiHarness) -> None:
    gated_profile(api)
    approval = held(api, "self.example.com")
    refused = api.post(f"{APPROVALS}/{approval['id']}/approve", json={"note": "lgtm"})
    assert refused.status_code == 403
    assert refused.json()["type"] == PROBLEM + "forbidden"
    assert "different person" in refused.json()["detail"]
    assert api.get(f"{APPROVALS}/{approval['id']}").json()["status"] == "pending"
    assert "self.example.com" not in certificate_names(api)
    audited = events(api, "approval.self_approval_refused")
    assert len(audited) == 1
    assert audited[0]["outcome"] == "denied" and audited[0]["resource_id"] == approval["id"]
    assert events(api, "approval.approve") == []


def test_another_admin_approves_and_the_certificate_is_issued_as_the_requester(api: ApiHarness) -> None:
    gated_profile(api)
    approver = second_admin(api)
    approval = held(api, "approved.example.com", key_type="ecdsa-p384")
    answer = api.post(f"{APPROVALS}/{approval['id']}/approve", key=approver, json={"note": "ticket 42"})
    assert answer.status_code == 200, answer.text
    decided = answer.json()
    assert decided["status"] == "approved"
    assert decided["decided_by"] == "approver" and decided["decision_note"] == "ticket 42"
    certificate_id = decided["result"]["certificate_id"]
    assert decided["resource_id"] == certificate_id and decided["result"]["server_keygen"] is True
    certificate = api.get(f"/api/v1/certificates/{certificate_id}").json()
    assert certificate["name"] == "approved.example.com"
    assert certificate["current_version"]["key_algorithm"] == "ECDSA"
    issued = events(api, "certificate.issue")
    assert len(issued) == 1
    assert issued[0]["actor"] == "test-admin"
    assert issued[0]["details"]["approved_by"] == "approver"
    assert issued[0]["details"]["approval_id"] == approval["id"]
    assert [e["actor"] for e in events(api, "approval.approve")] == ["approver"]
    exported = api.post(
        f"/api/v1/certificates/{certificate_id}/export", json={"format": "pem", "include_key": True}
    )
    assert exported.status_code == 200 and b"PRIVATE KEY" in exported.content
    again = api.post(f"{APPROVALS}/{approval['id']}/approve", key=approver)
    assert again.status_code == 409 and again.json()["type"] == PROBLEM + "conflict"


def test_a_csr_request_is_approved_with_the_requesters_key(api: ApiHarness) -> None:
    gated_profile(api)
    key = generate_private_key("ecdsa-p256")
    csr = build_csr(key, common_name="csr.example.com", dns_names=["csr.example.com"], ip_addresses=[])
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    approval = api.post(
        "/api/v1/certificates",
        json={"name": "csr.example.com", "issuer": "local", "profile": "gated", "csr": pem},
    ).json()["approval"]
    assert approval["payload"]["request"]["csr_pem"].startswith("-----BEGIN CERTIFICATE REQUEST")
    decided = api.post(f"{APPROVALS}/{approval['id']}/approve", key=second_admin(api)).json()
    version = api.get(f"/api/v1/certificates/{decided['result']['certificate_id']}").json()["current_version"]
    issued = x509.load_pem_x509_certificate(version["cert_pem"].encode())
    assert issued.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert version["has_key"] is False


def test_reject_needs_a_note_and_ends_the_request(api: ApiHarness) -> None:
    gated_profile(api)
    approver = second_admin(api)
    approval = held(api, "rejected.example.com")
    path = f"{APPROVALS}/{approval['id']}/reject"
    missing = api.post(path, key=approver, json={})
    assert missing.status_code == 422
    blank = api.post(path, key=approver, json={"note": "   "})
    assert blank.status_code == 422 and blank.json()["type"] == PROBLEM + "validation-error"
    assert api.get(f"{APPROVALS}/{approval['id']}").json()["status"] == "pending"
    answer = api.post(path, key=approver, json={"note": "wrong team"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "rejected" and answer.json()["decision_note"] == "wrong team"
    late = api.post(f"{APPROVALS}/{approval['id']}/approve", key=approver)
    assert late.status_code == 409 and "rejected" in late.json()["detail"]
    assert "rejected.example.com" not in certificate_names(api)
    rejected = events(api, "approval.reject")
    assert len(rejected) == 1 and rejected[0]["details"]["note"] == "wrong team"


def test_pending_requests_expire_and_cannot_be_decided_after(api: ApiHarness) -> None:
    gated_profile(api)
    approver = second_admin(api)
    approval = held(api, "late.example.com")
    assert approval["expires_at"] > approval["created_at"]
    now = api.services.context.clock.now()
    api.services.context.clock = FrozenClock(now + timedelta(hours=71))
    assert api.get(f"{APPROVALS}/{approval['id']}").json()["status"] == "pending"
    api.services.context.clock = FrozenClock(now + timedelta(hours=73))
    listed = api.get(APPROVALS, params={"status": "expired"}).json()["items"]
    assert [a["id"] for a in listed] == [approval["id"]]
    refused = api.post(f"{APPROVALS}/{approval['id']}/approve", key=approver)
    assert refused.status_code == 409 and "expired" in refused.json()["detail"]
    expired = events(api, "approval.expire")
    assert len(expired) == 1 and expired[0]["actor"] == "system"
    assert api.run(api.services.approvals.expire_due) == 0
    assert "late.example.com" not in certificate_names(api)


def test_the_maintenance_sweep_expires_without_a_reader(api: ApiHarness) -> None:
    gated_profile(api)
    held(api, "swept.example.com")
    held(api, "swept2.example.com")
    api.services.context.clock = FrozenClock(api.services.context.clock.now() + timedelta(days=4))
    assert api.run(api.services.approvals.expire_due) == 2
    assert len(events(api, "approval.expire")) == 2


def test_renewal_under_an_approval_tier_profile_is_held(api: ApiHarness) -> None:
    api.post("/api/v1/profiles", json={"name": "soon-gated", "rules": DEFAULT_RULES})
    created = request_issue(api, "renew.example.com", profile="soon-gated")
    assert created.status_code == 201
    certificate_id = created.json()["id"]
    switched = api.patch(
        "/api/v1/profiles/soon-gated", json={"rules": DEFAULT_RULES | {"requires_approval": True}}
    )
    assert switched.status_code == 200 and switched.json()["rules"]["requires_approval"] is True
    answer = api.post(f"/api/v1/certificates/{certificate_id}/renew")
    assert answer.status_code == 202, answer.text
    approval = answer.json()["approval"]
    assert approval["kind"] == "certificate.renew" and approval["resource_id"] == certificate_id
    assert len(api.get(f"/api/v1/certificates/{certificate_id}/versions").json()["items"]) == 1
    twice = api.post(f"/api/v1/certificates/{certificate_id}/renew")
    assert twice.status_code == 409 and twice.json()["approval_id"] == approval["id"]
    decided = api.post(f"{APPROVALS}/{approval['id']}/approve", key=second_admin(api))
    assert decided.status_code == 200, decided.text
    assert decided.json()["result"]["certificate_id"] == certificate_id
    assert len(api.get(f"/api/v1/certificates/{certificate_id}/versions").json()["items"]) == 2
    renewed = events(api, "certificate.renew")
    assert len(renewed) == 1 and renewed[0]["actor"] == "test-admin"
    assert renewed[0]["details"]["approved_by"] == "approver"


def test_a_request_that_fails_at_run_time_ends_failed_with_the_error(api: ApiHarness) -> None:
    gated_profile(api)
    approval = held(api, "taken.example.com")
    assert request_issue(api, "taken.example.com", profile="default").status_code == 201
    answer = api.post(f"{APPROVALS}/{approval['id']}/approve", key=second_admin(api))
    assert answer.status_code == 409
    assert answer.json()["type"] == PROBLEM + "conflict"
    assert answer.json()["approval_id"] == approval["id"]
    stored = api.get(f"{APPROVALS}/{approval['id']}").json()
    assert stored["status"] == "failed"
    assert "already exists" in stored["result"]["error"]
    assert stored["result"]["problem"] == PROBLEM + "conflict"
    assert [e["outcome"] for e in events(api, "approval.fail")] == ["failure"]
    duplicate = request_issue(api, "taken.example.com")
    assert duplicate.status_code == 409


def test_a_revoked_requester_key_no_longer_acts(api: ApiHarness) -> None:
    gated_profile(api)
    requester = api.post("/api/v1/keys", json={"name": "leaver", "roles": ["operator"]}).json()
    approval = request_issue_as(api, requester["secret"], "leaver.example.com")
    assert api.post(f"/api/v1/keys/{requester['key']['id']}/revoke").status_code == 200
    answer = api.post(f"{APPROVALS}/{approval['id']}/approve")
    assert answer.status_code == 409 and "revoked or expired" in answer.json()["detail"]
    assert api.get(f"{APPROVALS}/{approval['id']}").json()["status"] == "failed"


def request_issue_as(api: ApiHarness, key: str, name: str) -> dict[str, Any]:
    body = {"name": name, "issuer": "local", "profile": "gated", "common_name": name}
    response = api.post("/api/v1/certificates", key=key, json=body)
    assert response.status_code == 202, response.text
    approval: dict[str, Any] = response.json()["approval"]
    return approval


def test_two_approvers_racing_run_the_request_once(api: ApiHarness) -> None:
    gated_profile(api)
    approval = held(api, "race.example.com")
    first, second = (api.get("/api/v1/auth/me", key=second_admin(api, n)).json() for n in ("a1", "a2"))

    async def both() -> list[Any]:
        approvers = [
            Actor(id=me["id"], name=me["name"], type="api_key", access=global_access(["admin"]))
            for me in (first, second)
        ]
        service = api.services.approvals
        return await asyncio.gather(
            *(service.approve(approval_id=approval["id"], actor=a, note="") for a in approvers),
            return_exceptions=True,
        )

    outcomes = api.run(both)
    assert sum(isinstance(o, dict) for o in outcomes) == 1
    assert sum(isinstance(o, Conflict) for o in outcomes) == 1
    assert certificate_names(api).count("race.example.com") == 1
    assert len(events(api, "approval.approve")) == 1


def test_list_filters_and_bad_filters(api: ApiHarness) -> None:
    gated = gated_profile(api)
    gated_profile(api, "gated-b")
    approver = second_admin(api)
    first = held(api, "f1.example.com")
    second = held(api, "f2.example.com", profile="gated-b")
    api.post(f"{APPROVALS}/{first['id']}/reject", key=approver, json={"note": "no"})
    listed = api.get(APPROVALS).json()
    assert [a["id"] for a in listed["items"]] == [second["id"], first["id"]]
    assert [a["id"] for a in api.get(APPROVALS, params={"status": "pending"}).json()["items"]] == [
        second["id"]
    ]
    by_profile = api.get(APPROVALS, params={"profile": "gated"}).json()["items"]
    assert [a["profile_id"] for a in by_profile] == [gated["id"]]
    assert api.get(APPROVALS, params={"kind": "profile.update"}).json()["items"] == []
    page = api.get(APPROVALS, params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_cursor"]
    rest = api.get(APPROVALS, params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [a["id"] for a in rest["items"]] == [first["id"]] and rest["next_cursor"] is None
    for params in ({"status": "done"}, {"kind": "certificate.explode"}, {"profile": "nope"}):
        bad = api.get(APPROVALS, params=params)
        assert bad.status_code == 422 and bad.json()["type"] == PROBLEM + "validation-error"
    assert api.get(f"{APPROVALS}/apr_missing").status_code == 404


def test_a_viewer_reads_the_queue_but_cannot_decide(api: ApiHarness) -> None:
    gated_profile(api)
    approval = held(api, "viewer.example.com")
    viewer = api.key_for("viewer")
    assert [a["id"] for a in api.get(APPROVALS, key=viewer).json()["items"]] == [approval["id"]]
    for verb, body in (("approve", {}), ("reject", {"note": "no"})):
        refused = api.post(f"{APPROVALS}/{approval['id']}/{verb}", key=viewer, json=body)
        assert refused.status_code == 403 and refused.json()["type"] == PROBLEM + "forbidden"
    assert api.get(APPROVALS, key=api.key_for("auditor")).status_code == 403
    assert api.get(f"{APPROVALS}/{approval['id']}").json()["status"] == "pending"


def test_system_requests_are_held_too(api: ApiHarness) -> None:
    gated_profile(api)
    request = IssueRequest(
        name="sys.example.com", issuer="local", profile="gated", common_name="sys.example.com"
    )
    outcome = api.run(lambda: api.services.issuance.issue(request=request, actor=SYSTEM))
    assert isinstance(outcome, Held)
    decided = api.post(f"{APPROVALS}/{outcome.approval['id']}/approve")
    assert decided.status_code == 200, decided.text
    assert "sys.example.com" in certificate_names(api)


def test_a_profile_scoped_approver_sees_and_decides_only_its_profile(api: ApiHarness) -> None:
    gated_profile(api)
    gated_profile(api, "other")
    mine = held(api, "mine.example.com")
    theirs = held(api, "theirs.example.com", profile="other")
    created = api.post("/api/v1/keys", json={"name": "scoped", "roles": ["auditor"]}).json()
    key_id, scoped = created["key"]["id"], created["secret"]
    grant = {"role": "operator", "scope": "profile", "scope_id": "gated"}
    assert api.post(f"/api/v1/keys/{key_id}/grants", json=grant).status_code == 201
    assert [a["id"] for a in api.get(APPROVALS, key=scoped).json()["items"]] == [mine["id"]]
    assert api.get(f"{APPROVALS}/{theirs['id']}", key=scoped).status_code == 404
    assert api.post(f"{APPROVALS}/{theirs['id']}/approve", key=scoped).status_code == 404
    decided = api.post(f"{APPROVALS}/{mine['id']}/approve", key=scoped)
    assert decided.status_code == 200, decided.text
    assert decided.json()["decided_by"] == "scoped"
