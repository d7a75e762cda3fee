"""Agents over the API: enrolment, their own routes only, work, CSRs, outcomes, retirement, rotation."""

from __future__ import annotations

from typing import Any

from cryptography import x509

from support.apps import ApiHarness
from support.csrs import csr_pem
from support.material import TestCa


def enrol(api: ApiHarness, name: str, *, proxy: bool = False) -> dict[str, Any]:
    token = api.post("/api/v1/agents/enrolment-tokens", json={"name": name, "proxy": proxy})
    assert token.status_code == 201, token.text
    enrolled = api.client.post(
        "/api/v1/agents/enrol",
        json={
            "token": token.json()["token"],
            "hostname": "web-1",
            "os": "linux",
            "arch": "x86_64",
            "version": "1",
        },
    )
    assert enrolled.status_code == 201, enrolled.text
    body: dict[str, Any] = enrolled.json()
    return body


def nginx_target(api: ApiHarness, name: str, agent: str, directory: str = "/etc/nginx/tls") -> dict[str, Any]:
    created = api.post(
        "/api/v1/targets",
        json={
            "name": name,
            "type": "nginx",
            "agent": agent,
            "options": {"certificate_path": f"{directory}/{name}.crt", "key_path": f"{directory}/{name}.key"},
        },
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


def as_agent(agent: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {agent['credential']}"}


def test_enrolment_token_is_single_use_and_credential_is_shown_once(api: ApiHarness) -> None:
    token = api.post("/api/v1/agents/enrolment-tokens", json={"name": "edge-1"}).json()["token"]
    first = api.client.post("/api/v1/agents/enrol", json={"token": token})
    assert first.status_code == 201
    again = api.client.post("/api/v1/agents/enrol", json={"token": token})
    assert again.status_code == 401
    assert again.headers["content-type"].startswith("application/problem+json")
    listed = api.get("/api/v1/agents").json()["items"]
    assert [a["name"] for a in listed] == ["edge-1"]
    assert "credential" not in listed[0] and "credential_sha256" not in listed[0]
    tokens = api.get("/api/v1/agents/enrolment-tokens").json()["items"]
    assert tokens[0]["used_at"] is not None and "token" not in tokens[0] and "token_sha256" not in tokens[0]


def test_an_agent_cannot_reach_another_agents_routes(api: ApiHarness) -> None:
    one, two = enrol(api, "one"), enrol(api, "two")
    assert api.client.get(f"/api/v1/agents/{one['id']}/work", headers=as_agent(one)).status_code == 200
    stolen = api.client.get(f"/api/v1/agents/{one['id']}/work", headers=as_agent(two))
    assert stolen.status_code == 403
    assert stolen.json()["type"].endswith("forbidden")
    assert api.client.get(f"/api/v1/agents/{one['id']}/work", headers=api.headers()).status_code == 401
    assert api.client.get(f"/api/v1/agents/{one['id']}/work").status_code == 401


def test_a_retired_agent_gets_410(api: ApiHarness) -> None:
    agent = enrol(api, "old")
    assert api.post(f"/api/v1/agents/{agent['id']}/retire").status_code == 200
    gone = api.client.post(f"/api/v1/agents/{agent['id']}/heartbeat", headers=as_agent(agent), json={})
    assert gone.status_code == 410
    assert gone.json()["type"].endswith("gone")
    assert api.post(f"/api/v1/agents/{agent['id']}/retire").status_code == 409


def test_rotation_replaces_the_credential_with_a_grace_period(api: ApiHarness) -> None:
    agent = enrol(api, "rotor")
    rotated = api.client.post(f"/api/v1/agents/{agent['id']}/credential", headers=as_agent(agent))
    assert rotated.status_code == 200
    fresh = {"Authorization": f"Bearer {rotated.json()['credential']}"}
    assert (
        api.client.post(f"/api/v1/agents/{agent['id']}/heartbeat", headers=fresh, json={}).status_code == 204
    )
    # the previous credential keeps working during the grace period
    old = api.client.post(f"/api/v1/agents/{agent['id']}/heartbeat", headers=as_agent(agent), json={})
    assert old.status_code == 204


def test_target_options_are_checked_and_secrets_never_shown(api: ApiHarness) -> None:
    agent = enrol(api, "host")
    bad = [
        ({"certificate_path": "relative.crt", "key_path": "/k"}, "not an absolute path"),
        (
            {
                "certificate_path": "/c",
                "key_path": "/k",
                "reload_command": ["nginx", "-s", "reload; rm -rf /"],
            },
            "metacharacter",
        ),
        ({"certificate_path": "/c", "key_path": "/k", "colour": "blue"}, "colour"),
    ]
    for options, fragment in bad:
        answer = api.post(
            "/api/v1/targets", json={"name": "t", "type": "nginx", "agent": agent["id"], "options": options}
        )
        assert answer.status_code == 422, answer.text
        assert fragment in answer.json()["detail"]
    unknown = api.post(
        "/api/v1/targets", json={"name": "t", "type": "iis", "agent": agent["id"], "options": {}}
    )
    assert unknown.status_code == 422 and "unknown target type" in unknown.json()["detail"]
    assert api.get("/api/v1/targets").json()["items"] == []
    secret = api.post(
        "/api/v1/targets",
        json={
            "name": "store",
            "type": "keystore",
            "agent": agent["id"],
            "options": {"path": "/srv/app/keystore.p12", "format": "pkcs12", "password": "s3cret-pass"},
        },
    )
    assert secret.status_code == 201, secret.text
    assert "s3cret-pass" not in secret.text and "s3cret-pass" not in api.get("/api/v1/targets").text
    assert secret.json()["secrets_set"] == ["password"]
    work = api.client.get(f"/api/v1/agents/{agent['id']}/work", headers=as_agent(agent)).json()
    assert work["checks"][0]["target"]["options"]["password"] == "s3cret-pass"
    types = {t["name"] for t in api.get("/api/v1/target-types").json()["items"]}
    assert {"nginx", "apache", "haproxy", "keystore", "ssh"} <= types


def test_agentless_targets_need_a_proxy_agent(api: ApiHarness) -> None:
    plain = enrol(api, "plain")
    options = {
        "host": "127.0.0.1",
        "username": "deploy",
        "password": "pw",
        "known_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
        "certificate_path": "/etc/ssl/site.crt",
        "key_path": "/etc/ssl/site.key",
    }
    refused = api.post(
        "/api/v1/targets", json={"name": "remote", "type": "ssh", "agent": plain["id"], "options": options}
    )
    assert refused.status_code == 422 and "proxy agent" in refused.json()["detail"]


def test_agent_keyed_certificate_flow(api: ApiHarness, tmp_path: Any) -> None:
    agent = enrol(api, "web")
    nginx_target(api, "site", agent["id"])
    created = api.post(
        "/api/v1/certificates",
        json={
            "name": "site",
            "issuer": "local",
            "profile": "default",
            "sans": ["site.example.com"],
            "targets": ["site"],
        },
    )
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "Pending"
    work = api.client.get(f"/api/v1/agents/{agent['id']}/work", headers=as_agent(agent)).json()
    [item] = work["items"]
    assert item["action"] == "enrol" and item["key_type"].startswith(("ecdsa", "rsa", "ed25519"))
    assert item["deployments"][0]["target"]["options"]["key_path"] == "/etc/nginx/tls/site.key"
    # the same work is not handed out twice while the agent holds it
    assert api.client.get(f"/api/v1/agents/{agent['id']}/work", headers=as_agent(agent)).json()["items"] == []
    other = enrol(api, "other")
    csr = csr_pem("site.example.com")
    refused = api.client.post(
        f"/api/v1/agents/{other['id']}/certificates/{created.json()['id']}/csr",
        headers=as_agent(other),
        json={"csr": csr},
    )
    assert refused.status_code == 403
    issued = api.client.post(
        f"/api/v1/agents/{agent['id']}/certificates/{created.json()['id']}/csr",
        headers=as_agent(agent),
        json={"csr": csr},
    )
    assert issued.status_code == 200, issued.text
    version = issued.json()["version"]
    leaf = x509.load_pem_x509_certificate(version["cert_pem"].encode())
    assert (
        leaf.public_key().public_numbers()
        == x509.load_pem_x509_csr(csr.encode()).public_key().public_numbers()
    )  # type: ignore[union-attr]
    deployment_id = item["deployments"][0]["id"]
    reported = api.client.post(
        f"/api/v1/agents/{agent['id']}/deployments/{deployment_id}/result",
        headers=as_agent(agent),
        json={
            "outcome": "succeeded",
            "message": "nginx serves it",
            "steps": ["wrote", "reloaded"],
            "served_fingerprint": version["fingerprint_sha256"],
        },
    )
    assert reported.status_code == 200, reported.text
    again = api.client.post(
        f"/api/v1/agents/{agent['id']}/deployments/{deployment_id}/result",
        headers=as_agent(agent),
        json={"outcome": "succeeded"},
    )
    assert again.status_code == 409
    certificate = api.get(f"/api/v1/certificates/{created.json()['id']}").json()
    assert certificate["status"] == "Active"
    history = api.get(f"/api/v1/certificates/{created.json()['id']}/deployments").json()["items"]
    assert history[0]["status"] == "succeeded" and history[0]["version_id"] == version["id"]
    # renew now: the agent is asked for a new key; a CSR it was not asked for is refused
    renew = api.post(f"/api/v1/certificates/{created.json()['id']}/renew")
    assert renew.status_code == 202 and renew.json()["status"] == "key_requested"
    [next_item] = api.client.get(f"/api/v1/agents/{agent['id']}/work", headers=as_agent(agent)).json()[
        "items"
    ]
    assert next_item["action"] == "enrol"
    # re-deploy on demand hands out the current version
    redeploy = api.post(f"/api/v1/certificates/{created.json()['id']}/deploy")
    assert redeploy.status_code == 202
    [deploy_item] = api.client.get(f"/api/v1/agents/{agent['id']}/work", headers=as_agent(agent)).json()[
        "items"
    ]
    assert deploy_item["action"] == "deploy" and deploy_item["version"]["id"] == version["id"]
    failed = api.client.post(
        f"/api/v1/agents/{agent['id']}/deployments/{deploy_item['deployments'][0]['id']}/result",
        headers=as_agent(agent),
        json={"outcome": "rolled_back", "message": "reload failed; previous files restored"},
    )
    assert failed.status_code == 200
    actions = [
        e["action"]
        for e in api.get("/api/v1/audit", params={"resource_id": created.json()["id"]}).json()["items"]
    ]
    assert "deployment.failed" in actions and "deployment.succeeded" in actions
    metrics = api.get("/metrics").text
    assert 'certctl_deployments_total{outcome="succeeded",target="site"} 1.0' in metrics
    assert 'certctl_deployments_total{outcome="rolled_back",target="site"} 1.0' in metrics
    _ = TestCa


def test_bad_agent_input_is_a_clear_4xx(api: ApiHarness) -> None:
    agent = enrol(api, "strict")
    headers = as_agent(agent)
    base = f"/api/v1/agents/{agent['id']}"
    assert (
        api.client.post(
            f"{base}/deployments/deploy_nope/result", headers=headers, json={"outcome": "exploded"}
        ).status_code
        == 422
    )
    assert (
        api.client.post(
            f"{base}/deployments/deploy_nope/result", headers=headers, json={"outcome": "failed"}
        ).status_code
        == 404
    )
    assert (
        api.client.post(f"{base}/certificates/nope/csr", headers=headers, json={"csr": "junk"}).status_code
        == 404
    )
    assert (
        api.client.post(f"{base}/heartbeat", headers=headers, json={"hostname": "x" * 300}).status_code == 422
    )
    assert api.client.post("/api/v1/agents/enrol", json={"token": "cce_" + "x" * 40}).status_code == 401
    mixed = api.post(
        "/api/v1/certificates",
        json={
            "name": "m",
            "issuer": "local",
            "profile": "default",
            "sans": ["m.example.com"],
            "targets": ["none"],
            "csr": csr_pem("m.example.com"),
        },
    )
    assert mixed.status_code == 422 and "takes no csr" in mixed.json()["detail"]
    missing = api.post(
        "/api/v1/certificates",
        json={
            "name": "m",
            "issuer": "local",
            "profile": "default",
            "sans": ["m.example.com"],
            "targets": ["none"],
        },
    )
    assert missing.status_code == 422 and "target 'none' does not exist" in missing.json()["detail"]
