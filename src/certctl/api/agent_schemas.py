"""Request bodies of the agent, target and deployment routes. Unknown fields are refused."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from certctl.api.schemas import NAME, PEM_MAX, Strict


class EnrolmentTokenCreate(Strict):
    name: str = NAME
    """The name the enrolled agent will have."""
    proxy: bool = False
    """A proxy agent may serve agentless targets (SSH) on the server's behalf."""
    ttl_hours: int | None = Field(default=None, ge=1, le=720)


class HostFacts(Strict):
    hostname: str = Field(default="", max_length=255)
    os: str = Field(default="", max_length=100)
    arch: str = Field(default="", max_length=50)
    version: str = Field(default="", max_length=50)


class EnrolRequest(HostFacts):
    token: str = Field(min_length=1, max_length=200)


class CsrSubmit(Strict):
    csr: str = Field(min_length=1, max_length=PEM_MAX)


class DeploymentReport(Strict):
    outcome: Literal["succeeded", "unchanged", "failed", "rolled_back", "rollback_failed"]
    message: str = Field(default="", max_length=4000)
    steps: list[str] = Field(default_factory=list, max_length=100)
    served_fingerprint: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class CheckReport(Strict):
    ok: bool
    message: str = Field(default="", max_length=4000)


class TargetCreate(Strict):
    name: str = NAME
    type: str = Field(min_length=1, max_length=40)
    agent: str = Field(min_length=1, max_length=200, description="Agent id or name that serves it.")
    options: dict[str, Any] = Field(default_factory=dict)
    description: str = Field(default="", max_length=2000)


class TargetUpdate(Strict):
    options: dict[str, Any] | None = None
    description: str | None = Field(default=None, max_length=2000)


class RedeployRequest(Strict):
    target: str | None = Field(default=None, max_length=200)
