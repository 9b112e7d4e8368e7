"""The event catalogue (docs/contract.md, Events): published on ``<prefix>events`` and
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
TOKENS_REVOKED: Final = "tokens-revoked"
CATALOGUE: Final = (SESSION_CREATED, SESSION_INVALIDATED, GLOBAL_LOGOUT)

# Why a tokens-revoked event happened.
REVOKED: Final = "revoked"  # /revoke of an access token, or of a refresh token (its family's access tokens)
REFRESH_REUSE: Final = "refresh-reuse"  # a spent refresh token presented: its family ended
CODE_REPLAY: Final = "code-replay"  # a code redeemed twice: what its first redemption issued
REVOCATION_REASONS: Final = (REVOKED, REFRESH_REUSE, CODE_REPLAY)

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


def tokens_revoked(
    user_id: str, session_id_hashes: Sequence[str], jtis: Sequence[str], expires_at: int, at: float, *, reason: str
) -> str:
    """The JSON of a tokens-revoked event: access tokens to refuse until ``expires_at`` (the latest
    ``exp`` among them; after it the list can be forgotten), although their session lives on."""
    if reason not in REVOCATION_REASONS or not jtis:
        raise ValueError(f"tokens-revoked with reason {reason!r} and {len(jtis)} jtis")
    body = {"type": TOKENS_REVOKED, "user_id": user_id, "session_id_hashes": list(session_id_hashes),
            "jtis": list(jtis), "expires_at": iso8601(expires_at), "reason": reason, "at": iso8601(at)}  # fmt: skip
    return json.dumps(body, separators=(",", ":"))
