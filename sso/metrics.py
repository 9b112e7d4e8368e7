"""Prometheus metrics, correct across gunicorn workers.

Under gunicorn, ``deploy/gunicorn.conf.py`` points PROMETHEUS_MULTIPROC_DIR at
a fresh directory before the workers start, so prometheus_client keeps each
worker's values in memory-mapped files and /metrics sums them
(prometheus_client's multiprocess mode). Without it (tests, one process) the
default registry is used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisClusterException, RedisError

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
BACKCHANNEL = Counter(
    "sso_backchannel_logout_total", "Back-channel Logout Token deliveries, by outcome.", ["outcome"]
)  # delivered | retried | failed (4xx, or gave up after the retries) | dropped (queue full)
RATE_LIMITED = Counter("sso_rate_limited_total", "Failing requests answered 429, by limit.", ["limit"])
REDIS_ERRORS = Counter("sso_redis_errors_total", "Requests or background rounds that failed on Redis.", ["where"])
EVENTS_QUEUED = Gauge("sso_events_queued", "Events handed to the background worker and not yet published.",
                      multiprocess_mode="livesum")  # fmt: skip
EVENT_PUBLISH_LAG = Histogram(
    "sso_event_publish_lag_seconds", "Age of the oldest event of each published batch (hand-off to PUBLISH).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)  # fmt: skip
REDIS_LATENCY = Histogram(
    "sso_redis_command_duration_seconds", "Redis round trips by command (EVALSHA: a script; PIPELINE: a batch).",
    ["command"], buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
)  # fmt: skip
LIVE_SESSIONS_CACHE_SECONDS = 30

# The methods the service routes or answers (OPTIONS for CORS, HEAD for GET); anything else a
# client invents is one label value, so clients cannot choose how many series a worker keeps.
METHODS = frozenset({"GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


class ScrapeTimeCollector:
    """Series computed when /metrics is scraped, not kept in the per-worker files.

    ``sso_sessions_live`` counts the sessions in Redis (``RedisStore.count_live_sessions``,
    a SCAN with a bounded number of round trips), at most once per
    ``LIVE_SESSIONS_CACHE_SECONDS`` per worker; ``sso_sessions_live_complete`` is 0 when the
    bound cut the count short (it is then a lower bound). ``sso_build_info`` carries the
    version and the signing ``kid``. Redis errors leave the live-sessions series out.
    """

    def __init__(
        self,
        count_sessions: Callable[[], tuple[int, bool]],
        info: dict[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.count_sessions = count_sessions
        self.info = info
        self.clock = clock
        self._cached: tuple[float, int, bool] | None = None

    def _live(self) -> tuple[int, bool] | None:
        now = self.clock()
        if self._cached is None or now - self._cached[0] >= LIVE_SESSIONS_CACHE_SECONDS:
            try:
                count, complete = self.count_sessions()
            except (RedisError, RedisClusterException):
                REDIS_ERRORS.labels("metrics").inc()
                return None
            self._cached = (now, count, complete)
        return self._cached[1], self._cached[2]

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "sso_build_info", "Version and signing key id of this service.", labels=list(self.info)
        )
        info.add_metric(list(self.info.values()), 1)
        yield info
        live = self._live()
        if live is not None:
            yield GaugeMetricFamily("sso_sessions_live", "Sessions alive in Redis.", value=live[0])
            yield GaugeMetricFamily("sso_sessions_live_complete", "1 when sso_sessions_live is exact.",
                                    value=int(live[1]))  # fmt: skip


@contextmanager
def redis_round_trip(command: str) -> Iterator[None]:
    """Observe one Redis round trip in sso_redis_command_duration_seconds (failures too)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        REDIS_LATENCY.labels(command).observe(time.perf_counter() - started)


def render(scrape_time: ScrapeTimeCollector | None = None) -> tuple[bytes, str]:
    """The exposition text for every worker of this server, plus the scrape-time series."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if scrape_time is not None:
        extra = CollectorRegistry()
        extra.register(scrape_time)
        text += generate_latest(extra)
    return text, CONTENT_TYPE_LATEST
