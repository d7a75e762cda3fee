"""``/api/v1/agents``: enrolment tokens, the agent registry, and each agent's own routes (heartbeat,
work, CSR, outcome reports, credential rotation), which only that agent's credential opens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Response

from certctl.api.agent_schemas import (
    CheckReport,
    CsrSubmit,
    DeploymentReport,
    EnrolmentTokenCreate,
    EnrolRequest,
    HostFacts,
)
from certctl.api.deps import PUBLIC, AgentSelf, InfoDep, Need, ServicesDep
from certctl.api.serialize import jsonable
from certctl.auth.agents import AgentPrincipal
from certctl.domain.agents import AgentStatus
from certctl.errors import ValidationFailed
from certctl.services import agents as agent_service
from certctl.services.audit import Actor

router = APIRouter(prefix="/api/v1/agents", tags=["agents"])

POLL_SECONDS = 30
HEARTBEAT_SECONDS = 60


def _facts(body: HostFacts) -> agent_service.HostFacts:
    return agent_service.HostFacts(hostname=body.hostname, os=body.os, arch=body.arch, version=body.version)


@router.post("/enrolment-tokens", status_code=201)
async def create_enrolment_token(
    body: EnrolmentTokenCreate,
    services: ServicesDep,
    info: InfoDep,
    actor: Actor = Depends(Need("agent.edit")),
) -> Any:
    """A one-time token for ``certctl agent enrol`` (shown once)."""
    ttl = timedelta(hours=body.ttl_hours) if body.ttl_hours else None
    row, token = await services.agents.create_enrolment_token(
        name=body.name, proxy=body.proxy, ttl=ttl, actor=actor, info=info
    )
    return jsonable(row) | {"token": token}


@router.get("/enrolment-tokens")
async def list_enrolment_tokens(services: ServicesDep, _actor: Actor = Depends(Need("agent.read"))) -> Any:
    return {"items": jsonable(await services.agents.list_tokens())}


@router.post("/enrol", status_code=201, dependencies=[PUBLIC])
async def enrol(body: EnrolRequest, services: ServicesDep, info: InfoDep) -> Any:
    """Spend an enrolment token: the new agent and its credential (shown once)."""
    agent, credential = await services.agents.enrol(token=body.token, facts=_facts(body), info=info)
    return jsonable(agent) | {
        "credential": credential,
        "poll_interval_seconds": POLL_SECONDS,
        "heartbeat_interval_seconds": HEARTBEAT_SECONDS,
    }


@router.get("")
async def list_agents(
    services: ServicesDep,
    _actor: Actor = Depends(Need("agent.read")),
    status: str | None = Query(default=None),
) -> Any:
    if status is not None and status not in {str(s) for s in AgentStatus}:
        raise ValidationFailed("status must be active or retired")
    return {"items": jsonable(await services.agents.list(status=status))}


@router.get("/{ref}")
async def get_agent(ref: str, services: ServicesDep, _actor: Actor = Depends(Need("agent.read"))) -> Any:
    return jsonable(await services.agents.get(ref))


@router.post("/{ref}/retire")
async def retire_agent(
    ref: str, services: ServicesDep, info: InfoDep, actor: Actor = Depends(Need("agent.retire"))
) -> Any:
    """From now on the agent's routes answer 410 and the agent exits."""
    agent = await services.agents.retire(agent_ref=ref, actor=actor, info=info)
    return jsonable(agent)


@router.post("/{agent_id}/heartbeat", status_code=204)
async def heartbeat(
    agent_id: str,
    body: HostFacts,
    services: ServicesDep,
    agent: AgentPrincipal = Depends(AgentSelf("agent.heartbeat")),
) -> Response:
    await services.agents.heartbeat(agent_id=agent.agent_id, facts=_facts(body))
    return Response(status_code=204)


@router.get("/{agent_id}/work")
async def work(
    agent_id: str, services: ServicesDep, agent: AgentPrincipal = Depends(AgentSelf("agent.job.poll"))
) -> Any:
    """This agent's pending deployments (claimed for a while), and targets it should test."""
    found = await services.agent_work.work(agent_id=agent.agent_id)
    return jsonable(found) | {"poll_interval_seconds": POLL_SECONDS}


@router.post("/{agent_id}/certificates/{certificate_id}/csr")
async def submit_csr(
    agent_id: str,
    certificate_id: str,
    body: CsrSubmit,
    response: Response,
    services: ServicesDep,
    info: InfoDep,
    agent: AgentPrincipal = Depends(AgentSelf("agent.job.complete")),
) -> Any:
    """Certify a key this agent generated; 202 ``{"status": "held"}`` when the profile needs approval."""
    result = await services.agent_work.submit_csr(
        agent={"id": agent.agent_id, "name": agent.name},
        certificate_id=certificate_id,
        csr_pem=body.csr,
        info=info,
    )
    if result["status"] == "held":
        response.status_code = 202
    return jsonable(result)


@router.post("/{agent_id}/deployments/{deployment_id}/result")
async def report_deployment(
    agent_id: str,
    deployment_id: str,
    body: DeploymentReport,
    services: ServicesDep,
    agent: AgentPrincipal = Depends(AgentSelf("agent.job.complete")),
) -> Any:
    row = await services.agent_work.report(
        agent_id=agent.agent_id,
        deployment_id=deployment_id,
        outcome=body.outcome,
        message=body.message,
        steps=body.steps,
        served_fingerprint=body.served_fingerprint,
    )
    return jsonable({k: v for k, v in row.items() if k != "claimed_until"})


@router.post("/{agent_id}/targets/{target_id}/check", status_code=204)
async def report_check(
    agent_id: str,
    target_id: str,
    body: CheckReport,
    services: ServicesDep,
    agent: AgentPrincipal = Depends(AgentSelf("agent.job.complete")),
) -> Response:
    await services.agent_work.record_check(
        agent_id=agent.agent_id, target_id=target_id, ok=body.ok, message=body.message
    )
    return Response(status_code=204)


@router.post("/{agent_id}/credential")
async def rotate_credential(
    agent_id: str,
    services: ServicesDep,
    info: InfoDep,
    agent: AgentPrincipal = Depends(AgentSelf("agent.heartbeat")),
) -> Any:
    """A new credential for this agent (shown once); the old one works for ten more minutes."""
    actor = Actor(id=agent.agent_id, name=f"agent:{agent.name}", type="agent")
    row, credential = await services.agents.rotate(agent_id=agent.agent_id, actor=actor, info=info)
    return jsonable(row) | {"credential": credential}
