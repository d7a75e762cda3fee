"""The server side of an agent's frequent calls: the credential cache (and what empties it), heartbeats
written in batches, and a work poll that reads before it writes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event, select, update

from certctl.auth.agents import AgentAuthenticator
from certctl.domain.agents import CREDENTIAL_GRACE, MAX_DEPLOYMENT_ATTEMPTS
from certctl.services.agents import HostFacts
from certctl.store.db import read_only, unit_of_work
from certctl.store.repositories.agents import AGENTS
from certctl.store.repositories.deployments import DEPLOYMENTS
from support.apps import ApiHarness


def enrol(api: ApiHarness, name: str) -> dict[str, Any]:
    token = api.post("/api/v1/agents/enrolment-tokens", json={"name": name}).json()["token"]
    enrolled = api.client.post("/api/v1/agents/enrol", json={"token": token, "hostname": "before"})
    assert enrolled.status_code == 201, enrolled.text
    body: dict[str, Any] = enrolled.json()
    return body


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def heartbeat(api: ApiHarness, agent: dict[str, Any], credential: str | None = None, **facts: str) -> int:
    path = f"/api/v1/agents/{agent['id']}/heartbeat"
    answer = api.client.post(path, headers=bearer(credential or agent["credential"]), json=facts)
    return int(answer.status_code)


def poll(api: ApiHarness, agent: dict[str, Any]) -> dict[str, Any]:
    answer = api.client.get(f"/api/v1/agents/{agent['id']}/work", headers=bearer(agent["credential"]))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def stored_agent(api: ApiHarness, agent_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        async with read_only(api.services.context.engine) as connection:
            row = (await connection.execute(select(AGENTS).where(AGENTS.c.id == agent_id))).mappings().one()
        return dict(row)

    return api.run(read)


def test_retirement_takes_effect_at_once_on_a_cached_credential(api: ApiHarness) -> None:
    agent = enrol(api, "cached")
    assert poll(api, agent)["items"] == []
    assert agent["id"] in api.services.agent_authenticator.cached_agents()
    assert api.post(f"/api/v1/agents/{agent['id']}/retire").status_code == 200
    assert agent["id"] not in api.services.agent_authenticator.cached_agents()
    gone = api.client.get(f"/api/v1/agents/{agent['id']}/work", headers=bearer(agent["credential"]))
    assert gone.status_code == 410 and gone.json()["type"].endswith("gone")
    assert heartbeat(api, agent) == 410


def test_rotation_drops_cached_credentials_and_keeps_one_grace_period(api: ApiHarness) -> None:
    agent = enrol(api, "rotor")
    first = agent["credential"]
    assert heartbeat(api, agent) == 204
    rotate = f"/api/v1/agents/{agent['id']}/credential"
    second = api.client.post(rotate, headers=bearer(first)).json()["credential"]
    assert heartbeat(api, agent, first) == 204  # the previous credential, in its grace period
    assert heartbeat(api, agent, second) == 204
    third = api.client.post(rotate, headers=bearer(second)).json()["credential"]
    # the first credential is neither current nor previous any more: refused at once, cached or not
    assert heartbeat(api, agent, first) == 401
    assert heartbeat(api, agent, second) == 204
    assert heartbeat(api, agent, third) == 204


def test_a_cached_previous_credential_ends_with_its_grace_period(api: ApiHarness) -> None:
    agent = enrol(api, "graceful")
    rotate = f"/api/v1/agents/{agent['id']}/credential"
    assert api.client.post(rotate, headers=bearer(agent["credential"])).status_code == 200
    authenticator = api.services.agent_authenticator
    now = api.services.context.clock.now()
    assert api.run(lambda: authenticator.authenticate(agent["credential"], now=now)) is not None
    assert agent["id"] in authenticator.cached_agents()
    later = now + CREDENTIAL_GRACE + timedelta(seconds=1)
    assert api.run(lambda: authenticator.authenticate(agent["credential"], now=later)) is None


def test_another_process_notices_a_retirement_when_it_next_looks(api: ApiHarness) -> None:
    """A second authenticator on the same database stands for another server process or replica."""
    agent = enrol(api, "elsewhere")
    other = AgentAuthenticator(api.services.context.engine, sync_seconds=0.0)
    now = api.services.context.clock.now()
    before = api.run(lambda: other.authenticate(agent["credential"], now=now))
    assert before is not None and before.status == "active"
    assert api.post(f"/api/v1/agents/{agent['id']}/retire").status_code == 200
    after = api.run(lambda: other.authenticate(agent["credential"], now=api.services.context.clock.now()))
    assert after is not None and after.status == "retired"


def test_the_credential_cache_is_bounded_and_ignores_unknown_credentials(api: ApiHarness) -> None:
    agents = [enrol(api, f"bounded-{n}") for n in range(3)]
    small = AgentAuthenticator(api.services.context.engine, max_entries=2)
    now = api.services.context.clock.now()
    for agent in agents:
        assert api.run(lambda agent=agent: small.authenticate(agent["credential"], now=now)) is not None
    assert small.cached_agents() == {agents[1]["id"], agents[2]["id"]}
    assert api.run(lambda: small.authenticate("cca_" + "x" * 43, now=now)) is None
    assert small.cached_agents() == {agents[1]["id"], agents[2]["id"]}


def test_heartbeats_are_written_in_a_batch_and_reads_see_them(api: ApiHarness) -> None:
    one, two = enrol(api, "beat-1"), enrol(api, "beat-2")
    assert heartbeat(api, one, hostname="one.example", os="linux", arch="arm64", version="2") == 204
    assert heartbeat(api, two, hostname="two.example") == 204
    # the registry answers with what the agents reported (a read writes pending heartbeats first)
    listed = {a["id"]: a for a in api.get("/api/v1/agents").json()["items"]}
    assert listed[one["id"]]["hostname"] == "one.example" and listed[one["id"]]["arch"] == "arm64"
    assert listed[two["id"]]["hostname"] == "two.example"
    assert listed[one["id"]]["last_seen_at"] >= one["last_seen_at"]
    assert heartbeat(api, one, hostname="one-renamed.example") == 204
    assert api.get(f"/api/v1/agents/{one['id']}").json()["hostname"] == "one-renamed.example"


def test_a_flush_writes_pending_heartbeats_in_one_go(api: ApiHarness) -> None:
    agent = enrol(api, "flushed")
    enrolled_seen = stored_agent(api, agent["id"])["last_seen_at"]
    assert heartbeat(api, agent, hostname="first.example") == 204
    assert heartbeat(api, agent, hostname="second.example") == 204
    assert api.run(api.services.agents.flush_heartbeats) == 1  # the newest heartbeat per agent
    row = stored_agent(api, agent["id"])
    assert row["hostname"] == "second.example" and row["last_seen_at"] >= enrolled_seen
    assert api.run(api.services.agents.flush_heartbeats) == 0


def test_a_pending_heartbeat_does_not_touch_an_agent_retired_meanwhile(api: ApiHarness) -> None:
    agent = enrol(api, "late-beat")
    assert heartbeat(api, agent, hostname="still-here.example") == 204
    assert api.run(api.services.agents.flush_heartbeats) == 1
    assert api.post(f"/api/v1/agents/{agent['id']}/retire").status_code == 200

    async def heartbeat_answered_just_before_the_retirement() -> int:
        await api.services.agents.heartbeat(agent_id=agent["id"], facts=HostFacts(hostname="ghost.example"))
        return await api.services.agents.flush_heartbeats()

    assert api.run(heartbeat_answered_just_before_the_retirement) == 1
    row = stored_agent(api, agent["id"])
    assert row["status"] == "retired" and row["hostname"] == "still-here.example"


def test_an_empty_poll_only_reads(api: ApiHarness) -> None:
    agent = enrol(api, "idle")
    assert poll(api, agent) == {"items": [], "checks": [], "poll_interval_seconds": 30}
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    engine = api.services.context.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert poll(api, agent)["items"] == []
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements and set(statements) == {"SELECT"}


def test_work_fetched_too_often_without_an_outcome_fails_for_good(api: ApiHarness) -> None:
    agent = enrol(api, "forgetful")
    target = {"certificate_path": "/srv/site.crt", "key_path": "/srv/site.key"}
    created = api.post(
        "/api/v1/targets", json={"name": "site", "type": "files", "agent": agent["id"], "options": target}
    )
    assert created.status_code == 201, created.text
    certificate = api.post(
        "/api/v1/certificates",
        json={"name": "site", "issuer": "local", "profile": "default", "sans": ["site.example.com"],
              "targets": ["site"]},
    )  # fmt: skip
    assert certificate.status_code == 202, certificate.text

    async def lapse_leases() -> None:
        async with unit_of_work(api.services.context.engine) as uow:
            past = api.services.context.clock.now() - timedelta(seconds=1)
            await uow.connection.execute(update(DEPLOYMENTS).values(claimed_until=past))

    for _ in range(MAX_DEPLOYMENT_ATTEMPTS):
        [item] = poll(api, agent)["items"]
        assert item["action"] == "enrol"
        assert poll(api, agent)["items"] == []  # held under its lease
        api.run(lapse_leases)
    assert poll(api, agent)["items"] == []  # fetched too often: given up instead of handed out again
    [deployment] = api.get(f"/api/v1/certificates/{certificate.json()['id']}/deployments").json()["items"]
    assert deployment["status"] == "failed" and "repeatedly" in deployment["message"]
    assert deployment["attempts"] == MAX_DEPLOYMENT_ATTEMPTS
    audit = api.get("/api/v1/audit", params={"resource_id": certificate.json()["id"]}).json()["items"]
    assert "deployment.failed" in [event["action"] for event in audit]
