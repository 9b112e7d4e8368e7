"""Writing events into a real Redis the way the service does: the log entry, then the hint."""

from __future__ import annotations

import json
import time
from typing import Any

import redis


def event(kind: str, sids: list[str], user_id: str = "42", **extra: Any) -> dict[str, Any]:
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"type": kind, "user_id": user_id, "session_id_hashes": sids, "at": at, **extra}


def append(client: redis.Redis, prefix: str, body: dict[str, Any], *, hint: bool = True, entry_id: str = "*") -> str:
    """XADD the event to ``<prefix>event-log``, then PUBLISH it with its id on ``<prefix>events``."""
    entry = str(client.xadd(f"{prefix}event-log", {"event": json.dumps(body)}, id=entry_id))
    if hint:
        client.publish(f"{prefix}events", json.dumps({"id": entry, **body}))
    return entry
