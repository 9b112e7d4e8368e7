"""What every answered request leaves behind: one access-log line and the two request metrics.

Shared by the Flask hooks (sso/http.py), sso/fastpath.py and sso/precomputed.py
(metrics only), so every path writes the same line and counts the same series.
"""

from __future__ import annotations

import logging
from typing import Any

from sso import metrics

access_log = logging.getLogger("sso.access")


class RequestAccounting:
    """One access-log line and the two request metrics, for the Flask hooks and sso/fastpath.py alike.

    Every request runs this, so each metric child is looked up once and reused.
    """

    def __init__(self) -> None:
        self._counted: dict[tuple[str, str, int], Any] = {}  # bounded: routes x METHODS x statuses we answer
        self._timed: dict[str, Any] = {}

    def record(
        self,
        endpoint: str,
        method: str,
        path: str,
        status: int,
        duration: float,
        remote_addr: str | None,
        **ids: str | None,
    ) -> None:
        """``ids``: request_id and user_id where no request context adds them (RequestContextFilter)."""
        self.count(endpoint, method, status, duration)
        access_log.info(
            "request",
            extra={
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(duration * 1000, 3),
                "remote_addr": remote_addr,
                **ids,
            },
        )

    def count(self, endpoint: str, method: str, status: int, duration: float) -> None:
        """The two request metrics alone (sso/precomputed.py's answers write no log line)."""
        key = (endpoint, metrics.method_label(method), status)
        child = self._counted.get(key)
        if child is None:
            child = self._counted[key] = metrics.REQUESTS.labels(key[0], key[1], str(status))
        child.inc()
        observer = self._timed.get(endpoint)
        if observer is None:
            observer = self._timed[endpoint] = metrics.LATENCY.labels(endpoint)
        observer.observe(duration)
