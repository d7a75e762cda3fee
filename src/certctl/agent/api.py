"""The agent's side of the HTTPS API: enrol, heartbeat, fetch work, send a CSR, report outcomes.

Every call carries the agent credential; the server checks it belongs to the agent id in the path.
Failures become :class:`ServerError` with one readable line (never the credential)."""

from __future__ import annotations

import ssl
from typing import Any

import httpx2

from certctl.agent.state import Enrolment

TIMEOUT = 30.0


class ServerError(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        super().__init__(message)


class AgentRetired(ServerError):
    """410 Gone: the agent was retired on the server; it stops."""


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _problem(response: httpx2.Response) -> str:
    try:
        body = response.json()
        detail = body.get("detail") or body.get("title") or ""
    except ValueError:
        detail = response.text[:200]
    return " ".join(f"{response.status_code} {detail}".split())


async def _send(client: httpx2.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx2.Response:
    try:
        response = await client.request(method, path, **kwargs)
    except httpx2.HTTPError as exc:
        raise ServerError(None, f"cannot reach the server: {type(exc).__name__}: {exc}") from None
    if response.status_code == 410:
        raise AgentRetired(410, _problem(response))
    if response.status_code >= 400:
        raise ServerError(response.status_code, _problem(response))
    return response


async def enrol(*, server: str, token: str, ca_bundle: str | None, facts: dict[str, str]) -> dict[str, Any]:
    async with httpx2.AsyncClient(base_url=server, verify=tls_context(ca_bundle), timeout=TIMEOUT) as client:
        response = await _send(client, "POST", "/api/v1/agents/enrol", json={"token": token, **facts})
    body: dict[str, Any] = response.json()
    return body


class AgentApi:
    def __init__(self, enrolment: Enrolment, *, transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self._enrolment = enrolment
        self._base = f"/api/v1/agents/{enrolment.agent_id}"
        self._client = httpx2.AsyncClient(
            base_url=enrolment.server,
            verify=tls_context(enrolment.ca_bundle),
            timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {enrolment.credential}"},
            transport=transport,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def heartbeat(self, facts: dict[str, str]) -> None:
        await _send(self._client, "POST", f"{self._base}/heartbeat", json=facts)

    async def work(self) -> dict[str, Any]:
        body: dict[str, Any] = (await _send(self._client, "GET", f"{self._base}/work")).json()
        return body

    async def submit_csr(self, certificate_id: str, csr_pem: str) -> dict[str, Any]:
        path = f"{self._base}/certificates/{certificate_id}/csr"
        body: dict[str, Any] = (await _send(self._client, "POST", path, json={"csr": csr_pem})).json()
        return body

    async def report(self, deployment_id: str, body: dict[str, Any]) -> None:
        await _send(self._client, "POST", f"{self._base}/deployments/{deployment_id}/result", json=body)

    async def report_check(self, target_id: str, *, ok: bool, message: str) -> None:
        path = f"{self._base}/targets/{target_id}/check"
        await _send(self._client, "POST", path, json={"ok": ok, "message": message[:4000]})

    async def rotate(self) -> str:
        body = (await _send(self._client, "POST", f"{self._base}/credential")).json()
        return str(body["credential"])
