"""Prometheus metrics: request counts and latency per route template, and the job queue.

The queue gauges (jobs per type and status, dead-lettered notifications) describe the shared database, so
they are set from one grouped count at scrape time (:func:`set_queue_counts`): every replica answers with
the same, current figures. Job outcomes are counters kept by each worker process for the jobs it ran.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily

from certctl.domain.jobs import JobStatus, JobType

REGISTRY = CollectorRegistry()
REQUESTS = Counter(
    "certctl_http_requests_total", "HTTP requests answered", ("method", "route", "status"), registry=REGISTRY
)
LATENCY = Histogram(
    "certctl_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ("route",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
ISSUED = Counter("certctl_certificates_issued_total", "Certificates issued", ("issuer",), registry=REGISTRY)

QUEUE_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FAILED)
"""The statuses the queue gauges report: waiting, in hand, and given up on (dead letters)."""
OUTCOMES = ("succeeded", "failed", "retried")
JOBS = Gauge(
    "certctl_jobs",
    "Jobs in the queue by type and status (pending, running, failed), counted at scrape time",
    ("type", "status"),
    registry=REGISTRY,
)
DEAD_LETTERS = Gauge(
    "certctl_notification_dead_letters",
    "Notification deliveries that used up their attempts (failed) and wait for a requeue",
    registry=REGISTRY,
)
JOB_OUTCOMES = Counter(
    "certctl_job_outcomes_total",
    "Job attempts finished by this process: succeeded, failed for good, or failed and retried later",
    ("type", "outcome"),
    registry=REGISTRY,
)
for _type in JobType:
    for _outcome in OUTCOMES:
        JOB_OUTCOMES.labels(str(_type), _outcome)


DEPLOYMENT_OUTCOMES = ("succeeded", "failed", "rolled_back", "rollback_failed")


class DeploymentCounts:
    """``certctl_deployments_total{target, outcome}``: finished deployments per target, counted from the
    database at scrape time (so every replica reports the same, and a restart loses nothing)."""

    def __init__(self) -> None:
        self.counts: list[tuple[str, str, int]] | None = []

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "certctl_deployments",
            "Finished deployments per target and outcome (succeeded, failed, rolled_back, rollback_failed)",
            labels=("target", "outcome"),
        )
        for target, outcome, count in self.counts or []:
            if outcome in DEPLOYMENT_OUTCOMES:
                family.add_metric((target, outcome), count)
        yield family


DEPLOYMENTS = DeploymentCounts()
REGISTRY.register(DEPLOYMENTS)


def set_deployment_counts(counts: list[tuple[str, str, int]] | None) -> None:
    DEPLOYMENTS.counts = counts


def render_metrics() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def set_queue_counts(counts: Mapping[tuple[str, str], int] | None) -> None:
    """Set the queue gauges from ``(type, status) -> jobs``; a pair not counted is 0. ``None`` (the count
    could not be taken) drops them, so a scrape shows no figure rather than a stale one."""
    if counts is None:
        JOBS.clear()
        DEAD_LETTERS.set(float("nan"))
        return
    kinds = {str(kind) for kind in JobType} | {kind for kind, _ in counts}
    for kind in sorted(kinds):
        for status in QUEUE_STATUSES:
            JOBS.labels(kind, str(status)).set(counts.get((kind, str(status)), 0))
    DEAD_LETTERS.set(counts.get((str(JobType.NOTIFICATION), str(JobStatus.FAILED)), 0))


def count_job_outcome(*, type: str, outcome: str) -> None:
    """One finished attempt: ``succeeded``, ``failed`` (for good) or ``retried`` (failed, runs again)."""
    JOB_OUTCOMES.labels(type, outcome).inc()


_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}
MAX_CACHED_SERIES = 4096


def observe(
    *, method: str, scope: MutableMapping[str, Any], status: int, started: float, template: str | None = None
) -> None:
    route = scope.get("route")
    template = template or getattr(route, "path", None) or "unmatched"
    key = (method, template, status)
    series = _SERIES.get(key)
    if series is None:  # looking a labelled series up costs more than recording into it: kept
        if len(_SERIES) >= MAX_CACHED_SERIES:
            _SERIES.clear()
        series = _SERIES[key] = (REQUESTS.labels(method, template, str(status)), LATENCY.labels(template))
    series[0].inc()
    series[1].observe(time.perf_counter() - started)
