"""Durable job kinds and states, and the deduplication keys that make enqueueing idempotent."""

from __future__ import annotations

from enum import StrEnum


class JobType(StrEnum):
    ISSUANCE = "issuance"
    RENEWAL = "renewal"
    DEPLOYMENT = "deployment"
    VALIDATION = "validation"
    NOTIFICATION = "notification"


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


def renewal_dedup_key(certificate_id: str, version_id: str) -> str:
    """One renewal job per certificate version, ever: a second enqueue for the same version is a no-op,
    so two racing scanners (or one scanner run twice) cannot renew a certificate twice."""
    return f"renewal:{certificate_id}:{version_id}"
