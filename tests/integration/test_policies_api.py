"""Issuance policies over the real API and database (SQLite and PostgreSQL): CRUD, bad rules, blocking
before signing (issue and renew), warn mode, the in-process cache, and the violations view."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from certctl.domain.policy import IssuanceFacts
from certctl.errors import PolicyViolation
from certctl.services.audit import SYSTEM
from certctl.services.policies import PolicyService
from certctl.store.db import unit_of_work
from certctl.store.repositories import rows
from certctl.store.repositories.policies import POLICIES
from support.apps import ApiHarness
from support.csrs import counts, csr_pem, rsa_key

PROBLEM = "urn:certctl:problem:"
PROD_NAMES = {
    "name": "prod-names",
    "description": "production names stay out of dev",
    "rules": [
        {
            "type": "denied_domains",
            "patterns": ["*.prod.example.com", "**.prod.example.com"],
            "environments": ["dev"],
        }
    ],
}


def _policy(api: ApiHarness, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/api/v1/policies", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _issue(api: ApiHarness, name: str, **body: Any) -> Any:
    payload = {"name": name, "issuer": "local", "profile": "default", "sans": [name]} | body
    return api.post("/api/v1/certificates", json=payload)


def _counts(api: ApiHarness) -> tuple[int, int, int]:
    return api.run(lambda: counts(api.services.context.engine))


def _events(api: ApiHarness, action: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.get("/api/v1/audit", params={"action": action}).json()["items"]
    return items


def test_crud_is_validated_and_audited(api: ApiHarness) -> None:
    created = _policy(
        api,
        {"name": "names", "rules": [{"type": "denied_domains", "patterns": [".Internal.Example.com."]}]},
    )
    assert created["id"].startswith("pol_")
    assert created["enabled"] is True
    assert created["rules"] == [
        {
            "type": "denied_domains",
            "mode": "block",
            "environments": [],
            "patterns": ["**.internal.example.com"],
        }
    ]
    assert [p["name"] for p in api.get("/api/v1/policies").json()["items"]] == ["names"]
    assert api.get("/api/v1/policies/names").json()["id"] == created["id"]
    assert api.post("/api/v1/policies", json={"name": "names"}).status_code == 409

    changed = api.patch(
        f"/api/v1/policies/{created['id']}",
        json={"enabled": False, "rules": [{"type": "max_sans", "max": 5, "mode": "warn"}]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["enabled"] is False
    assert changed.json()["rules"][0] == {"type": "max_sans", "mode": "warn", "environments": [], "max": 5}

    assert api.delete("/api/v1/policies/names").status_code == 204
    assert api.get("/api/v1/policies/names").status_code == 404
    assert api.delete("/api/v1/policies/names").status_code == 404
    for action in ("policy.create", "policy.update", "policy.delete"):
        (event,) = _events(api, action)
        assert event["resource_id"] == created["id"]
    assert _events(api, "policy.update")[0]["details"]["fields"] == ["enabled", "rules"]


BAD_BODIES = [
    ("unknown field", {"name": "p", "colour": "blue"}),
    ("unknown rule type", {"name": "p", "rules": [{"type": "allow_everything"}]}),
    ("unknown rule field", {"name": "p", "rules": [{"type": "wildcards", "allowed": False, "depth": 2}]}),
    ("bad pattern", {"name": "p", "rules": [{"type": "denied_domains", "patterns": ["a.*.example.com"]}]}),
    ("empty patterns", {"name": "p", "rules": [{"type": "allowed_domains", "patterns": []}]}),
    ("bad mode", {"name": "p", "rules": [{"type": "wildcards", "mode": "shout"}]}),
    ("weak floor", {"name": "p", "rules": [{"type": "key_floor", "min_rsa_bits": 512}]}),
    ("empty floor", {"name": "p", "rules": [{"type": "key_floor"}]}),
    ("rules not a list", {"name": "p", "rules": {"type": "wildcards"}}),
    ("bad name", {"name": " leading space"}),
]


@pytest.mark.parametrize(("label", "body"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_policies_are_422_and_write_nothing(api: ApiHarness, label: str, body: dict[str, Any]) -> None:
    before = _counts(api)
    response = api.post("/api/v1/policies", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == PROBLEM + "validation-error"
    assert _counts(api) == before
    assert api.get("/api/v1/policies").json()["items"] == []


def test_bad_updates_are_422(api: ApiHarness) -> None:
    _policy(api, PROD_NAMES)
    bad_rule = api.patch("/api/v1/policies/prod-names", json={"rules": [{"type": "max_sans", "max": 0}]})
    assert bad_rule.status_code == 422
    assert "max_sans" in bad_rule.json()["detail"]
    assert api.patch("/api/v1/policies/prod-names", json={"name": None}).status_code == 422
    assert api.get("/api/v1/policies/prod-names").json()["rules"][0]["type"] == "denied_domains"


def test_service_validates_rules_for_every_caller(api: ApiHarness) -> None:
    """Rules written without the API (e.g. a future import) are checked by the service, rule named."""
    service = api.services.policies
    bad = {"name": "direct", "description": "", "enabled": True, "rules": [{"type": "max_sans"}]}
    with pytest.raises(Exception, match=r"rule 1 \(max_sans\) max: Field required"):
        api.run(lambda: service.create(values=bad, actor=SYSTEM))


def test_acceptance_denied_domain_blocks_dev_and_writes_only_the_audit_row(api: ApiHarness) -> None:
    policy = _policy(api, PROD_NAMES)
    before = _counts(api)
    response = _issue(api, "api.prod.example.com", environment="dev")
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document = response.json()
    assert document["type"] == PROBLEM + "policy-violation"
    assert document["title"] == "The request breaks an issuance policy"
    assert 'policy "prod-names" rule 1 (denied_domains)' in document["detail"]
    assert "api.prod.example.com (matches *.prod.example.com)" in document["detail"]
    (violation,) = document["violations"]
    assert violation | {"message": ""} == {
        "policy": "prod-names",
        "policy_id": policy["id"],
        "rule": 1,
        "type": "denied_domains",
        "mode": "block",
        "message": "",
    }
    certificates, versions, events = _counts(api)
    assert (certificates, versions, events) == (before[0], before[1], before[2] + 1)
    (event,) = _events(api, "policy.blocked")
    assert event["outcome"] == "denied"
    assert event["resource_id"] == "api.prod.example.com"
    assert event["details"]["environment"] == "dev"
    assert event["details"]["violations"] == document["violations"]

    wildcard = _issue(api, "wildcard-prod", sans=["*.prod.example.com"], environment="dev")
    assert wildcard.status_code == 422
    assert "*.prod.example.com (matches *.prod.example.com)" in wildcard.json()["detail"]

    allowed = _issue(api, "api.prod.example.com", environment="production")
    assert allowed.status_code == 201, allowed.text
    assert _counts(api)[:2] == (before[0] + 1, before[1] + 1)


def test_disabled_policy_does_not_block(api: ApiHarness) -> None:
    _policy(api, PROD_NAMES | {"enabled": False})
    assert _issue(api, "api.prod.example.com", environment="dev").status_code == 201
    api.patch("/api/v1/policies/prod-names", json={"enabled": True})
    assert _issue(api, "web.prod.example.com", environment="dev").status_code == 422


def test_warn_mode_lets_it_through_and_the_issue_audit_row_carries_the_warning(api: ApiHarness) -> None:
    warn_rules = [PROD_NAMES["rules"][0] | {"mode": "warn"}]
    _policy(api, PROD_NAMES | {"rules": warn_rules})
    response = _issue(api, "api.prod.example.com", environment="dev")
    assert response.status_code == 201, response.text
    (event,) = _events(api, "certificate.issue")
    (warning,) = event["details"]["policy_warnings"]
    assert warning["mode"] == "warn"
    assert warning["message"].startswith('policy "prod-names" rule 1 (denied_domains)')
    assert _events(api, "policy.blocked") == []


def test_renewal_is_checked_too(api: ApiHarness) -> None:
    issued = _issue(api, "old.prod.example.com", environment="dev")
    assert issued.status_code == 201
    _policy(api, PROD_NAMES)
    before = _counts(api)
    refused = api.post("/api/v1/certificates/old.prod.example.com/renew")
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"] == PROBLEM + "policy-violation"
    assert 'policy "prod-names" rule 1 (denied_domains)' in refused.json()["detail"]
    assert _counts(api) == (before[0], before[1], before[2] + 1)
    (event,) = _events(api, "policy.blocked")
    assert event["resource_id"] == issued.json()["id"]
    current = api.get("/api/v1/certificates/old.prod.example.com").json()
    assert current["current_version"]["id"] == issued.json()["current_version"]["id"]

    api.patch("/api/v1/policies/prod-names", json={"rules": [PROD_NAMES["rules"][0] | {"mode": "warn"}]})
    assert api.post("/api/v1/certificates/old.prod.example.com/renew").status_code == 200
    (renewal,) = _events(api, "certificate.renew")
    assert renewal["details"]["policy_warnings"][0]["type"] == "denied_domains"


RULE_CASES = [
    ("allowed_domains", {"patterns": ["**.corp.example"]}, {}, "outside the allowed domains"),
    ("allowed_issuers", {"issuers": ["prod-ca"]}, {}, "issuer 'local' is not allowed"),
    ("key_floor", {"min_rsa_bits": 3072}, {"key_type": "rsa-2048"}, "RSA key of 2048 bits"),
    ("key_floor", {"algorithms": ["ECDSA"]}, {"csr": csr_pem("x.example.com", key=rsa_key(2048))}, "RSA"),
    ("max_lifetime", {"max_days": 47}, {"validity_days": 90}, "lifetime of 90 days"),
    ("required_metadata", {"tags": ["cost-center"]}, {"tags": {"app": "shop"}}, "missing tag cost-center"),
    ("max_sans", {"max": 1}, {"sans": ["x.example.com", "192.0.2.7"]}, "2 subject alternative names"),
    ("wildcards", {"allowed": False}, {"sans": ["*.example.com"]}, "wildcard names are not allowed"),
]


@pytest.mark.parametrize(
    ("rule_type", "settings", "request_body", "fragment"), RULE_CASES, ids=[c[0] for c in RULE_CASES]
)
def test_each_rule_type_blocks_through_the_api(
    api: ApiHarness, rule_type: str, settings: dict[str, Any], request_body: dict[str, Any], fragment: str
) -> None:
    _policy(api, {"name": "guard", "rules": [{"type": rule_type, **settings}]})
    before = _counts(api)
    response = _issue(api, "x.example.com", **request_body)
    assert response.status_code == 422, response.text
    assert f'policy "guard" rule 1 ({rule_type})' in response.json()["detail"]
    assert fragment in response.json()["detail"]
    assert _counts(api) == (before[0], before[1], before[2] + 1)


def test_required_owner_and_team_pass_when_given(api: ApiHarness) -> None:
    assert api.post("/api/v1/teams", json={"name": "web"}).status_code == 201
    assert api.post("/api/v1/owners", json={"name": "alice", "team": "web"}).status_code == 201
    _policy(api, {"name": "owned", "rules": [{"type": "required_metadata", "owner": True, "team": True}]})
    refused = _issue(api, "a.example.com")
    assert refused.status_code == 422
    assert "missing an owner and a team" in refused.json()["detail"]
    assert _issue(api, "b.example.com", owner="alice", team="web").status_code == 201


def test_policy_cache_sees_local_changes_at_once_and_others_within_the_ttl(api: ApiHarness) -> None:
    """With a TTL the gate reads the database once; a change through the same service is seen at once, a
    change made elsewhere (another replica) only once the TTL has passed."""
    context = replace(api.services.context, cache_ttl_seconds=3600.0)
    here, elsewhere = PolicyService(context), PolicyService(context)
    dev_request = IssuanceFacts(
        dns_names=("api.prod.example.com",),
        ip_addresses=(),
        common_name=None,
        key_algorithm="ECDSA",
        key_size=256,
        validity=timedelta(days=30),
        issuer_id="iss_x",
        issuer_name="local",
        profile_id="prf_x",
        profile_name="default",
        environment="dev",
        name="api",
    )
    assert api.run(lambda: here.enforce(dev_request, actor=SYSTEM)) == []
    api.run(lambda: elsewhere.create(values=dict(PROD_NAMES, enabled=True), actor=SYSTEM))
    assert api.run(lambda: here.enforce(dev_request, actor=SYSTEM)) == []
    api.run(lambda: here.update(ref="prod-names", values={"description": "touched"}, actor=SYSTEM))
    with pytest.raises(PolicyViolation, match=r'policy "prod-names" rule 1 \(denied_domains\)'):
        api.run(lambda: here.enforce(dev_request, actor=SYSTEM))
    api.run(lambda: here.update(ref="prod-names", values={"enabled": False}, actor=SYSTEM))
    assert api.run(lambda: here.enforce(dev_request, actor=SYSTEM)) == []


def test_a_stored_policy_that_no_longer_validates_blocks_everything(api: ApiHarness) -> None:
    """Rules edited in the database by hand fail closed: every request is refused, naming the policy."""
    policy = _policy(api, PROD_NAMES)

    async def corrupt() -> None:
        async with unit_of_work(api.services.context.engine) as uow:
            await rows.change(uow.connection, POLICIES, policy["id"], {"rules": [{"type": "teleport"}]})

    api.run(corrupt)
    api.services.invalidate_caches()
    refused = _issue(api, "anything.example.com", environment="production")
    assert refused.status_code == 422
    assert refused.json()["violations"][0]["type"] == "unreadable"
    assert 'policy "prod-names" (unreadable)' in refused.json()["detail"]
    assert api.get("/api/v1/policies/prod-names/violations").status_code == 409
    assert api.patch("/api/v1/policies/prod-names", json={"description": "still on"}).status_code == 422
    assert api.patch("/api/v1/policies/prod-names", json={"enabled": False}).status_code == 200
    assert _issue(api, "anything.example.com", environment="production").status_code == 201
    assert api.patch("/api/v1/policies/prod-names", json={"enabled": True}).status_code == 422
    assert api.patch("/api/v1/policies/prod-names", json=PROD_NAMES | {"enabled": True}).status_code == 200
    assert _issue(api, "api.prod.example.com", environment="dev").status_code == 422


def test_violations_view_lists_offending_certificates(api: ApiHarness) -> None:
    for name, environment in (
        ("a.prod.example.com", "dev"),
        ("b.prod.example.com", "dev"),
        ("c.prod.example.com", "production"),
        ("www.example.com", "dev"),
        ("d.prod.example.com", "dev"),
    ):
        assert _issue(api, name, environment=environment).status_code == 201
    _policy(api, PROD_NAMES | {"enabled": False})
    assert api.post("/api/v1/certificates/d.prod.example.com/archive").status_code == 200

    found = api.get("/api/v1/policies/prod-names/violations")
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["policy"]["name"] == "prod-names" and body["policy"]["enabled"] is False
    assert sorted(item["name"] for item in body["items"]) == ["a.prod.example.com", "b.prod.example.com"]
    assert body["next_cursor"] is None
    item = body["items"][0]
    assert item["environment"] == "dev" and item["issuer"] == "local" and item["profile"] == "default"
    assert item["violations"][0]["type"] == "denied_domains"
    assert item["violations"][0]["message"].startswith('policy "prod-names" rule 1 (denied_domains)')

    first = api.get("/api/v1/policies/prod-names/violations", params={"limit": 1}).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    rest = api.get(
        "/api/v1/policies/prod-names/violations", params={"limit": 1, "cursor": first["next_cursor"]}
    ).json()
    assert first["items"] + rest["items"] == body["items"]
    assert api.get("/api/v1/policies/nope/violations").status_code == 404
    bad_cursor = api.get("/api/v1/policies/prod-names/violations", params={"cursor": "%%%"})
    assert bad_cursor.status_code == 422
