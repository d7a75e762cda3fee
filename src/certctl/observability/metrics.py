"""Prometheus metrics: request counts and latency per route template, plus an ASGI middleware."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

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


def render_metrics() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def observe(
    *, method: str, scope: MutableMapping[str, Any], status: int, started: float, template: str | None = None
) -> None:
    route = scope.get("route")
    template = template or getattr(route, "path", None) or "unmatched"
    REQUESTS.labels(method, template, str(status)).inc()
    LATENCY.labels(template).observe(time.perf_counter() - started)
