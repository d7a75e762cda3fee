"""Agents and deployments: their states, credential formats and the rules of the agent work queue."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

AGENT_CREDENTIAL_PREFIX = "cca_"
ENROLMENT_TOKEN_PREFIX = "cce_"  # noqa: S105 (a prefix, not a secret)
CREDENTIAL_GRACE = timedelta(minutes=10)
"""After a rotation the previous credential keeps working this long, so a lost response is survivable."""
ENROLMENT_TOKEN_DEFAULT_TTL = timedelta(hours=24)
ENROLMENT_TOKEN_MAX_TTL = timedelta(days=30)
WORK_LEASE = timedelta(minutes=10)
"""How long an agent holds work it fetched before the server offers it again."""
MAX_DEPLOYMENT_ATTEMPTS = 3
WORK_BATCH = 20


class AgentStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    SUPERSEDED = "superseded"
    """A newer deployment of the same certificate to the same target replaced this one before it ran."""
    CANCELLED = "cancelled"


OPEN = frozenset({DeploymentStatus.PENDING, DeploymentStatus.IN_PROGRESS})
FAILURES = frozenset(
    {DeploymentStatus.FAILED, DeploymentStatus.ROLLED_BACK, DeploymentStatus.ROLLBACK_FAILED}
)


class DeploymentReason(StrEnum):
    ISSUANCE = "issuance"
    RENEWAL = "renewal"
    MAPPING = "mapping"
    MANUAL = "manual"


REPORTABLE = {
    "succeeded": DeploymentStatus.SUCCEEDED,
    "unchanged": DeploymentStatus.SUCCEEDED,
    "failed": DeploymentStatus.FAILED,
    "rolled_back": DeploymentStatus.ROLLED_BACK,
    "rollback_failed": DeploymentStatus.ROLLBACK_FAILED,
}
"""Outcomes an agent may report (``certctl.agent.deploy.base.Outcome``) and the status each gives."""
