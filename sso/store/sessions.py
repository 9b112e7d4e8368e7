"""Session records, the per-user index, and the bound on sessions per user (SPEC: Sessions).

A record is one hash, ``P{T}:s:<sid>``, in the user's bucket: ending a session
is one DEL, and the refresh families and revocation marks that live inside it
go with it. The index ``P{T}:u:<user>`` scores each sid by its last activity,
which orders the listing and, with the records it names, the sessions to evict
at the cap.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from redis.typing import EncodableT

from sso.store.connections import primaries
from sso.store.layout import Keys, sid_bucket, user_bucket
from sso.store.runner import ReplicaTimeout, Runner

# The fields of a session record, in the order find() and list() read them.
SESSION_FIELDS = (
    "user_id", "created_at", "last_active_at", "expires_at", "client_ip", "user_agent", "platform", "claims",
)  # fmt: skip
MAX_CHANGED_RETRIES = 5


@dataclass(frozen=True)
class Ended:
    """A session that ended, and the clients it had issued tokens to (for back-channel logout)."""

    sid: str
    clients: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entry: str) -> Ended:
        sid, _, clients = entry.partition("=")
        return cls(sid, tuple(c for c in clients.split(",") if c))


def _request_id() -> str:
    return secrets.token_hex(12)


def _record(values: Sequence[str | None]) -> dict[str, str]:
    return {name: value for name, value in zip(SESSION_FIELDS, values, strict=True) if value is not None}


class SessionRecords:
    def __init__(self, runner: Runner, keys: Keys, *, max_per_user: int) -> None:
        self.runner = runner
        self.keys = keys
        self.max_per_user = max_per_user

    def create(self, sid: str, user_id: str, at: float, expires_at: int, fields: dict[str, str]) -> list[Ended]:
        """Write the record and index it; the sessions evicted for the cap (least recently active first).

        ``at`` is the creation time: to the second in the record, to the millisecond in the index,
        where it orders sessions created in the same second. One script call below the cap. At the
        cap the script lists the index, and a second call declares every record in it (a script may
        touch only the keys it declares): it drops the members whose record expired and evicts as
        many live sessions as it takes to make room, the whole surplus if the cap was lowered. That
        reads one record per member: the cap, plus those expired since the user's last creation at
        it (or, once, the surplus of a lowered cap). Sessions created meanwhile count as live and can
        call for another round; the last round creates the session all the same and leaves those
        racing ones to the user's next creation, rather than refuse a valid caller with a 503
        (``invalidate_all`` does the same).
        """
        record, index = self.keys.session(sid), self.keys.index(user_id)
        if record is None or sid_bucket(sid) != user_bucket(user_id):
            raise ValueError("the session id hash is not in the user's bucket")
        mark = self.keys.request(user_bucket(user_id), _request_id())
        now = int(at)
        ttl = max(1, expires_at - now)
        args: list[EncodableT] = [
            sid, user_id, now, expires_at, ttl, fields["client_ip"], fields["user_agent"], fields["platform"],
            fields["claims"], self.max_per_user, ttl, f"{at:.3f}",
        ]  # fmt: skip
        members: list[str] = []
        for round_ in range(1, MAX_CHANGED_RETRIES + 1):
            outcome, evicted, *members = self.runner.run(
                "create_session",
                [record, index, mark, *self.keys.indexed_sessions(user_id, members)],
                [*args, int(round_ == MAX_CHANGED_RETRIES), *members],
            )
            if outcome == "ok":
                break
        return [Ended.parse(entry) for entry in evicted.split()]

    def find(self, sid: str) -> dict[str, str] | None:
        """One HMGET: the record of a session id hash, or None."""
        key = self.keys.session(sid)
        if key is None:
            return None
        values = cast(list[str | None], self.runner.client.hmget(key, SESSION_FIELDS))
        return _record(values) if values[0] is not None else None

    def alive(self, sids: Sequence[str], now: int) -> list[bool]:
        """Which of these sessions are live, without marking them active (one pipeline)."""
        keys = [self.keys.session(sid) for sid in sids]
        pipe = self.runner.client.pipeline(transaction=False)
        for key in keys:
            if key is not None:
                pipe.hget(key, "expires_at")
        answers = iter(pipe.execute())
        return [key is not None and int(next(answers) or 0) > now for key in keys]

    def listing(self, user_id: str) -> list[tuple[str, dict[str, str]]]:
        """A user's sessions, most recently active first: read the index, then the records."""
        index = self.keys.index(user_id)
        sids = cast(list[str], self.runner.client.zrevrange(index, 0, -1))
        if not sids:
            return []
        records = [self.keys.session(sid) or "" for sid in sids]
        flat = self.runner.run("list_sessions", [index, *records], sids)
        return [(flat[i], _record(flat[i + 1])) for i in range(0, len(flat), 2)]

    def invalidate(self, user_id: str, sids: Iterable[str]) -> list[Ended]:
        """End these sessions of the user (others' are left alone); acknowledged by a replica."""
        mine = [sid for sid in dict.fromkeys(sids) if self.keys.user_session(user_id, sid)]
        return (self._end(user_id, "some", mine, ()) or []) if mine else []

    def invalidate_all(self, user_id: str, keep: Iterable[str]) -> list[Ended]:
        """End every session of the user but ``keep``: read the index, then one script that
        refuses (and is repeated) if a session was created in between.

        A login storm can outlast MAX_CHANGED_RETRIES rounds: then the sessions of the last read
        are ended as listed. Every session that existed when the call began is among them; only
        one created during the call can remain, as if it had come just after it. Giving up with a
        503 instead refused a valid caller (tests/test_races.py, 16 racing creates).
        """
        kept = list(dict.fromkeys(keep))
        kept_set = set(kept)
        targets: list[str] = []
        for _ in range(MAX_CHANGED_RETRIES):
            members = cast(list[str], self.runner.client.zrange(self.keys.index(user_id), 0, -1))
            targets = [sid for sid in members if sid not in kept_set]
            ended = self._end(user_id, "all", targets, kept)
            if ended is not None:
                return ended
        return (self._end(user_id, "some", targets, ()) or []) if targets else []

    def _end(self, user_id: str, mode: str, targets: Sequence[str], kept: Sequence[str]) -> list[Ended] | None:
        bucket = user_bucket(user_id)
        records = [self.keys.user_session(user_id, sid) or "" for sid in targets]
        try:
            answer = self.runner.run_acknowledged(
                "invalidate",
                [self.keys.index(user_id), self.keys.request(bucket, _request_id()), *records],
                [user_id, mode, len(targets), *targets, *kept],
            )
        except ReplicaTimeout as exc:  # ended on the primary all the same: say what ended
            exc.result = [] if exc.result[0] == "changed" else [Ended.parse(entry) for entry in exc.result[1:]]
            raise
        if answer[0] == "changed":
            return None
        return [Ended.parse(entry) for entry in answer[1:]]

    def count_live(self, max_round_trips: int = 1000, batch: int = 1000) -> tuple[int, bool]:
        """Live sessions, counted by their records with SCAN on every primary; ``(count, complete)``.

        At most ``max_round_trips`` SCAN calls of ``batch`` keys each in all (about a million
        keys looked at): past that the count is a lower bound and ``complete`` is False.
        """
        count, budget = 0, max_round_trips
        pattern = f"{self.keys.prefix}{{*}}:s:*"
        for node in primaries(self.runner.client):
            cursor = None
            while cursor != 0:
                if budget == 0:
                    return count, False
                budget -= 1
                cursor, found = node.scan(cursor or 0, match=pattern, count=batch)
                cursor = int(cursor)
                count += len(found)
        return count, True

    def touch_many(self, marks: Iterable[tuple[str, str, int]], interval: int) -> int:
        """Debounced activity writes, pipelined per node; how many records were updated."""
        calls: list[tuple[list[str], list[EncodableT]]] = []
        for user_id, sid, at in marks:
            record = self.keys.user_session(user_id, sid)
            if record is not None:
                calls.append(([record, self.keys.index(user_id)], [at, interval, sid]))
        if not calls:
            return 0
        return sum(int(n) for n in self.runner.batch("touch", calls))
