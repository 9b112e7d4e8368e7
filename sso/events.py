"""The event catalogue (SPEC.md, Events): published on ``<prefix>events`` and
appended to the durable log ``<prefix>event-log``.

Pub/sub is at-most-once: events are hints for API instances to drop caches and
close WebSockets; the store stays the truth. The log (a Redis Stream, written
first) lets an instance that was away resume from the last ``id`` it saw.
``docs/events.schema.json`` is the JSON Schema of every message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

SESSION_CREATED: Final = "session-created"
SESSION_INVALIDATED: Final = "session-invalidated"
GLOBAL_LOGOUT: Final = "global-logout"
CATALOGUE: Final = (SESSION_CREATED, SESSION_INVALIDATED, GLOBAL_LOGOUT)

# Why a session-invalidated event happened.
INVALIDATED: Final = "invalidated"  # the service API, /session/invalidate
LOGOUT: Final = "logout"  # /logout
EVICTED: Final = "evicted"  # the per-user session cap
ADMIN: Final = "admin"  # the operator CLI
INVALIDATION_REASONS: Final = (INVALIDATED, LOGOUT, EVICTED, ADMIN)


def iso8601(timestamp: float) -> str:
    """ISO 8601 UTC with a Z suffix, to the second: the format of every JSON timestamp."""
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(kind: str, user_id: str, session_id_hashes: Sequence[str], at: float, *, reason: str | None = None) -> str:
    """The JSON of one event, without ``id`` (the log entry's id, added when it is published).

    ``reason`` is required for session-invalidated and refused elsewhere.
    """
    if kind not in CATALOGUE:
        raise ValueError(f"unknown event type {kind!r}")
    if (kind == SESSION_INVALIDATED) != (reason is not None) or (reason and reason not in INVALIDATION_REASONS):
        raise ValueError(f"event {kind!r} with reason {reason!r}")
    body: dict[str, Any] = {"type": kind, "user_id": user_id, "session_id_hashes": list(session_id_hashes)}
    if reason is not None:
        body["reason"] = reason
    body["at"] = iso8601(at)
    return json.dumps(body, separators=(",", ":"))
