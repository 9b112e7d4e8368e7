"""The event catalogue published on ``<prefix>events`` (docs/contract.md, Events).

Pub/sub is at-most-once: events are hints for API instances to drop caches and
close WebSockets; the store stays the truth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

SESSION_CREATED: Final = "session-created"
SESSION_INVALIDATED: Final = "session-invalidated"
GLOBAL_LOGOUT: Final = "global-logout"
CATALOGUE: Final = (SESSION_CREATED, SESSION_INVALIDATED, GLOBAL_LOGOUT)


def iso8601(timestamp: float) -> str:
    """ISO 8601 UTC with a Z suffix, to the second: the format of every JSON timestamp."""
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(kind: str, user_id: str, session_id_hashes: Sequence[str], at: float) -> str:
    """The JSON message for one event."""
    if kind not in CATALOGUE:
        raise ValueError(f"unknown event type {kind!r}")
    return json.dumps(
        {"type": kind, "user_id": user_id, "session_id_hashes": list(session_id_hashes), "at": iso8601(at)},
        separators=(",", ":"),
    )
