"""The only package that speaks Redis: the key layout, the scripts, and one interface over them.

Its parts: ``layout`` (buckets, key names, token formats), ``runner`` (how a
script runs on one server, Sentinel or Cluster), ``scripts`` and ``lua/``
(one file per atomic change), and one module per record family:
``sessions``, ``codes``, ``families`` (refresh tokens), ``token_state``
(access-token revocation), ``counters`` (rate limits) and ``eventlog`` (the durable log). ``RedisStore`` ties
them together for the rest of the service, which calls nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable

from redis.cluster import RedisCluster
from redis.exceptions import RedisError

from sso.store.codes import FAMILIES_PER_SESSION, CodeIssue, Codes, Redemption
from sso.store.counters import Counters
from sso.store.eventlog import EventLog
from sso.store.families import Families, RefreshInfo, Rotation
from sso.store.layout import Keys, draw_session_token
from sso.store.runner import REDIS_ERRORS, Client, ReplicaTimeout, Runner
from sso.store.sessions import SESSION_FIELDS, Ended, SessionRecords
from sso.store.token_state import LEGACY_WINDOW, MARKS_PER_SESSION, Revoked, TokenState

__all__ = [
    "FAMILIES_PER_SESSION",
    "LEGACY_WINDOW",
    "MARKS_PER_SESSION",
    "SESSION_FIELDS",
    "CodeIssue",
    "Ended",
    "Keys",
    "Redemption",
    "RedisStore",
    "RefreshInfo",
    "REDIS_ERRORS",
    "ReplicaTimeout",
    "Revoked",
    "Rotation",
]


class NotWritable(RedisError):
    """Redis answers but would not keep a write (a cluster with an uncovered slot)."""


class RedisStore:
    """Session, code and token state in Redis; takes a ready client (one server, Sentinel or Cluster).

    Its methods are those of the parts, bound here so the rest of the service
    sees one interface (and mypy sees their real signatures).
    """

    def __init__(
        self,
        client: Client,
        prefix: str = "sso:",
        *,
        wait_for_replica: bool = False,
        max_sessions_per_user: int = 100,
        event_log_retention: int = 86400,
    ) -> None:
        self.redis = client
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.runner = Runner(client, wait_for_replica=wait_for_replica)
        self.sessions = sessions = SessionRecords(self.runner, self.keys, max_per_user=max_sessions_per_user)
        self.codes = codes = Codes(self.runner, self.keys)
        self.families = families = Families(self.runner, self.keys)
        self.token_state = token_state = TokenState(self.runner, self.keys)
        self.counters = counters = Counters(self.runner, self.keys)
        self.event_log = event_log = EventLog(self.runner, self.keys, retention=event_log_retention)
        self.new_session_token = draw_session_token  # (token, sid in the user's bucket)
        self.create_session = sessions.create
        self.find_session = sessions.find
        self.sessions_alive = sessions.alive
        self.list_sessions = sessions.listing
        self.end_sessions = sessions.invalidate  # [Ended(sid, clients)]: what back-channel logout needs
        self.end_all_sessions = sessions.invalidate_all
        self.touch_many = sessions.touch_many
        self.count_live_sessions = sessions.count_live
        self.issue_code = codes.issue
        self.read_code = codes.read
        self.burn_code = codes.burn
        self.redeem_code = codes.redeem
        self.rotate_refresh = families.rotate
        self.revoke_refresh = families.revoke
        self.inspect_refresh = families.inspect
        self.access_token_state = token_state.access_token_state
        self.revoke_access = token_state.revoke_access
        self.count_failure = counters.count_failure
        self.publish_many = event_log.publish_many

    def invalidate(self, user_id: str, sids: Iterable[str]) -> list[str]:
        """End these sessions of the user; the ids of those that were live."""
        return [e.sid for e in self.end_sessions(user_id, sids)]

    def invalidate_all(self, user_id: str, keep: Iterable[str]) -> list[str]:
        return [e.sid for e in self.end_all_sessions(user_id, keep)]

    @property
    def events_channel(self) -> str:
        return self.keys.events_channel

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def check_writable(self) -> None:
        """Raise RedisError unless a write lands now (``/_health``): one SET with a short TTL, which a
        demoted master refuses (READONLY); on a cluster, also every slot must be served."""
        self.redis.set(self.keys.health, "1", px=10_000)
        if isinstance(self.redis, RedisCluster):
            info = self.redis.cluster_info()
            if info.get("cluster_state") != "ok":
                raise NotWritable("the cluster does not serve every slot")

    @property
    def event_log_key(self) -> str:
        return self.keys.event_log
