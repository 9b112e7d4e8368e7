"""The service's event catalogue, parsed (docs/integrating.md has an example of each).

Unknown types are passed through, not refused: a newer service may add some.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

SESSION_CREATED: Final = "session-created"
SESSION_INVALIDATED: Final = "session-invalidated"
GLOBAL_LOGOUT: Final = "global-logout"
TOKENS_REVOKED: Final = "tokens-revoked"
CATALOGUE: Final = (SESSION_CREATED, SESSION_INVALIDATED, GLOBAL_LOGOUT, TOKENS_REVOKED)
RESYNC: Final = "resync"
"""The ``reason`` of a session-invalidated event the listener made itself from ``/session/status``."""


@dataclass(frozen=True)
class Event:
    type: str
    user_id: str | None
    session_id_hashes: tuple[str, ...]
    at: float  # Unix time
    id: str | None = None  # the log entry id; None for a resync or a log-less service
    reason: str | None = None
    jtis: tuple[str, ...] = ()
    expires_at: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ends_sessions(self) -> bool:
        return self.type in (SESSION_INVALIDATED, GLOBAL_LOGOUT)


def entry_time(entry_id: str) -> float:
    """A stream entry id's timestamp (its milliseconds part), as Unix time."""
    return int(entry_id.split("-", 1)[0]) / 1000


def parse_time(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            pass
    return default


def parse(text: str | bytes, entry_id: str | None = None) -> Event:
    """One event from its JSON; ValueError when it is not an event at all."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError("not an event")
    entry_id = entry_id or (data["id"] if isinstance(data.get("id"), str) else None)
    fallback = entry_time(entry_id) if entry_id else 0.0
    hashes = data.get("session_id_hashes") or []
    jtis = data.get("jtis") or []
    if not isinstance(hashes, list) or not isinstance(jtis, list):
        raise ValueError("malformed event")
    expires = data.get("expires_at")
    return Event(
        type=data["type"],
        user_id=data.get("user_id") if isinstance(data.get("user_id"), str) else None,
        session_id_hashes=tuple(h for h in hashes if isinstance(h, str)),
        at=parse_time(data.get("at"), fallback),
        id=entry_id,
        reason=data.get("reason") if isinstance(data.get("reason"), str) else None,
        jtis=tuple(j for j in jtis if isinstance(j, str)),
        expires_at=parse_time(expires, 0.0) if expires is not None else None,
        raw=data,
    )
