"""Prometheus metrics, correct across gunicorn workers.

Under gunicorn, ``deploy/gunicorn.conf.py`` points PROMETHEUS_MULTIPROC_DIR at
a fresh directory before the workers start, so prometheus_client keeps each
worker's values in memory-mapped files and /metrics sums them
(prometheus_client's multiprocess mode). Without it (tests, one process) the
default registry is used.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter("sso_http_requests_total", "HTTP requests by endpoint, method and status.",
                   ["endpoint", "method", "status"])  # fmt: skip
LATENCY = Histogram(
    "sso_http_request_duration_seconds", "Request latency by endpoint.", ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)  # fmt: skip
TOKENS_ISSUED = Counter("sso_tokens_issued_total", "Access tokens issued, by grant.", ["grant"])
REFRESH_REUSE = Counter("sso_refresh_reuse_detected_total", "Spent refresh tokens presented again (family revoked).")
CODE_REPLAY = Counter("sso_code_replay_detected_total", "Authorization codes redeemed twice.")
SESSIONS_CREATED = Counter("sso_sessions_created_total", "Sessions created.")
SESSIONS_INVALIDATED = Counter("sso_sessions_invalidated_total", "Sessions ended by invalidation or logout.")
ACTIVITY_WRITES = Counter("sso_activity_writes_total", "Activity timestamps written to Redis.")
ACTIVITY_PENDING = Gauge("sso_activity_pending", "Activity marks waiting for the background flush.",
                         multiprocess_mode="livesum")  # fmt: skip
EVENTS_PUBLISHED = Counter("sso_events_published_total", "Session events published.")
EVENTS_FAILED = Counter("sso_events_failed_total", "Event publish attempts that failed (retried).")
EVENTS_DROPPED = Counter("sso_events_dropped_total", "Events dropped because the queue was full.")
RATE_LIMITED = Counter("sso_rate_limited_total", "Failing requests answered 429, by limit.", ["limit"])
REDIS_ERRORS = Counter("sso_redis_errors_total", "Requests or background rounds that failed on Redis.", ["where"])

# The methods the service routes or answers (OPTIONS for CORS, HEAD for GET); anything else a
# client invents is one label value, so clients cannot choose how many series a worker keeps.
METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def render() -> tuple[bytes, str]:
    """The exposition text for every worker of this server."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
