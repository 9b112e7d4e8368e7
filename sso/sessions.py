"""Session lifecycle: create, validate, list, invalidate (docs/contract.md, Sessions).

The raw session token is returned once at creation and never stored; every
lookup goes through ``session_id_hash``. Events and activity marks are handed
to the background worker, never written on the request path.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sso import events, metrics
from sso.backchannel import BackchannelLogout
from sso.digests import token_hash
from sso.store import Ended, RedisStore, ReplicaTimeout
from sso.worker import BackgroundWorker

audit_log = logging.getLogger("sso.audit")


@dataclass(frozen=True)
class Session:
    session_id_hash: str
    user_id: str
    created_at: int
    last_active_at: int
    expires_at: int
    client_ip: str = ""
    user_agent: str = ""
    platform: str = ""
    claims: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_record(cls, sid: str, record: dict[str, str]) -> Session:
        return cls(
            session_id_hash=sid,
            user_id=record["user_id"],
            created_at=int(record["created_at"]),
            last_active_at=int(record["last_active_at"]),
            expires_at=int(record["expires_at"]),
            client_ip=record.get("client_ip", ""),
            user_agent=record.get("user_agent", ""),
            platform=record.get("platform", ""),
            claims=json.loads(record.get("claims") or "{}"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id_hash": self.session_id_hash,
            "user_id": self.user_id,
            "created_at": events.iso8601(self.created_at),
            "last_active_at": events.iso8601(self.last_active_at),
            "expires_at": events.iso8601(self.expires_at),
            "client_ip": self.client_ip or None,
            "user_agent": self.user_agent or None,
            "platform": self.platform or None,
            "claims": self.claims,
        }


class SessionService:
    def __init__(
        self,
        store: RedisStore,
        worker: BackgroundWorker,
        *,
        ttl: int,
        clock: Callable[[], float] = time.time,
        backchannel: BackchannelLogout | None = None,
    ) -> None:
        self.store = store
        self.worker = worker
        self.ttl = ttl
        self.clock = clock
        self.backchannel = backchannel

    def _ended(self, user_id: str, ended: Sequence[Ended]) -> list[str]:
        """Queue the back-channel logouts of ended sessions (the worker sends them); their ids."""
        if ended and self.backchannel is not None:
            self.backchannel.enqueue(user_id, ended)
        return [e.sid for e in ended]

    def create(
        self,
        user_id: str,
        *,
        client_ip: str | None = None,
        user_agent: str | None = None,
        platform: str | None = None,
        claims: dict[str, Any] | None = None,
    ) -> tuple[str, Session]:
        """A new session and its token; the token is never stored."""
        token, sid = self.store.new_session_token(user_id)
        at = self.clock()  # to the millisecond in the index: it orders creations within one second
        now = int(at)
        session = Session(
            session_id_hash=sid,
            user_id=user_id,
            created_at=now,
            last_active_at=now,
            expires_at=now + self.ttl,
            client_ip=client_ip or "",
            user_agent=user_agent or "",
            platform=platform or "",
            claims=claims or {},
        )
        evicted_sessions = self.store.create_session(
            sid,
            user_id,
            at,
            session.expires_at,
            {
                "client_ip": session.client_ip,
                "user_agent": session.user_agent,
                "platform": session.platform,
                "claims": json.dumps(session.claims, separators=(",", ":")),
            },
        )
        metrics.SESSIONS_CREATED.inc()
        evicted = self._ended(user_id, evicted_sessions)
        if evicted:  # the per-user cap: the least recently active made room
            metrics.SESSIONS_INVALIDATED.inc(len(evicted))
            self.worker.publish(
                events.envelope(events.SESSION_INVALIDATED, user_id, evicted, now, reason=events.EVICTED)
            )
        self.worker.publish(events.envelope(events.SESSION_CREATED, user_id, [sid], now))
        return token, session

    def find(self, sid: str) -> Session | None:
        """The live session with this id hash, or None; records no activity."""
        record = self.store.find_session(sid)
        if record is None:
            return None
        session = Session.from_record(sid, record)
        return session if session.expires_at > self.clock() else None

    def validate(self, sid: str) -> Session | None:
        """Like find, and marks the session active (debounced)."""
        session = self.find(sid)
        if session is not None:
            self.worker.mark_active(session.user_id, sid, session.last_active_at)
        return session

    def from_token(self, token: str) -> Session | None:
        return self.find(token_hash(token))

    def list_for_user(self, user_id: str) -> list[Session]:
        now = self.clock()
        sessions = [Session.from_record(sid, rec) for sid, rec in self.store.list_sessions(user_id)]
        live = [s for s in sessions if s.expires_at > now]
        return sorted(live, key=lambda s: (s.last_active_at, s.created_at), reverse=True)

    def statuses(self, sids: Sequence[str]) -> dict[str, bool]:
        """Which sessions are live, for an API instance resynchronising after missed
        events; records no activity (it is not a use of the session)."""
        unique = list(dict.fromkeys(sids))
        return dict(zip(unique, self.store.sessions_alive(unique, int(self.clock())), strict=True))

    def invalidate(self, user_id: str, sids: Sequence[str], *, reason: str, actor: str) -> list[str]:
        """End the listed sessions; ``reason`` (events.INVALIDATION_REASONS) goes into the event,
        ``actor`` (who asked) into the audit line."""

        def announce(ended: list[str]) -> None:
            _audit(events.SESSION_INVALIDATED, user_id, requested=len(sids), ended=ended, actor=actor)
            if ended:
                metrics.SESSIONS_INVALIDATED.inc(len(ended))
                message = events.envelope(events.SESSION_INVALIDATED, user_id, ended, self.clock(), reason=reason)
                self.worker.publish(message)

        if not sids:
            return []
        return self._announced(user_id, lambda: self.store.end_sessions(user_id, dict.fromkeys(sids)), announce)

    def invalidate_all(self, user_id: str, keep: Sequence[str] = (), *, actor: str) -> list[str]:
        """End every session of a user but ``keep``; ``actor`` goes into the audit line."""

        def announce(ended: list[str]) -> None:
            _audit(events.GLOBAL_LOGOUT, user_id, requested=None, ended=ended, actor=actor)
            if ended:
                metrics.SESSIONS_INVALIDATED.inc(len(ended))
                self.worker.publish(events.envelope(events.GLOBAL_LOGOUT, user_id, ended, self.clock()))

        return self._announced(user_id, lambda: self.store.end_all_sessions(user_id, keep), announce)

    def _announced(
        self, user_id: str, end: Callable[[], list[Ended]], announce: Callable[[list[str]], None]
    ) -> list[str]:
        """Run ``end`` and announce what it ended (event, audit, back-channel logout) — also when no
        replica acknowledged it in time: the sessions did end on the primary, the caller gets a 503,
        and its retry would find nothing left to announce."""
        try:
            ended = self._ended(user_id, end())
        except ReplicaTimeout as exc:
            announce(self._ended(user_id, exc.result or []))
            raise
        announce(ended)
        return ended


def _audit(action: str, user_id: str, *, requested: int | None, ended: list[str], actor: str) -> None:
    """One ``sso.audit`` line per invalidation request, whatever it ended (hashes only, never tokens)."""
    audit_log.info(action, extra={"user_id": user_id, "actor": actor, "requested": requested,
                                  "session_id_hashes": ended, "ended": len(ended)})  # fmt: skip
