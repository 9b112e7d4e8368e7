"""What this instance refuses although the signature is good: revoked sessions and tokens.

Fed by the event listener. A denied ``sid`` is kept until every access token its
session could hold has expired: tokens issued before the invalidation carry
``iat`` no later than the event (plus clock skew), and the verifier refuses any
token living longer than ``max_token_lifetime``, so ``at + max_token_lifetime +
leeway`` is enough. A denied ``jti`` is kept until the ``expires_at`` of its
``tokens-revoked`` event. Expired entries are dropped as new ones arrive.

Memory is bounded: at most ``max_entries`` of each kind (about 220 bytes each with
its string: 22 MB per 100 000, measured).
Beyond that the entry that would expire soonest is dropped first and counted in
``overflowed`` (and logged): an instance seeing that many revocations inside one
token lifetime should raise the bound.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable

log = logging.getLogger("fluxer_sso_client.revocation")


class ExpiringSet:
    """Strings with an expiry each; bounded; safe across threads and greenlets."""

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._until: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []  # may hold superseded pairs; _until is the truth
        self._lock = threading.Lock()
        self.overflowed = 0

    def add(self, item: str, until: float) -> None:
        with self._lock:
            if self._until.get(item, float("-inf")) >= until:
                return
            self._until[item] = until
            heapq.heappush(self._heap, (until, item))
            self._purge(self._clock())
            while len(self._until) > self.max_entries:
                self._pop()
                self.overflowed += 1
            if len(self._heap) > 2 * self.max_entries + 16:  # superseded pairs: rebuild
                self._heap = [(u, i) for i, u in self._until.items()]
                heapq.heapify(self._heap)

    def __contains__(self, item: object) -> bool:
        until = self._until.get(item) if isinstance(item, str) else None
        return until is not None and until > self._clock()

    def __len__(self) -> int:
        return len(self._until)

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            self._pop()

    def _pop(self) -> None:
        until, item = heapq.heappop(self._heap)
        if self._until.get(item) == until:
            del self._until[item]


class RevocationList:
    """Denied session ids and token ids, each until the tokens it covers have expired."""

    def __init__(
        self,
        *,
        max_token_lifetime: float = 3600.0,
        leeway: float = 30.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_token_lifetime = max_token_lifetime
        self.leeway = leeway
        self._clock = clock
        self.sessions = ExpiringSet(max_entries, clock)
        self.tokens = ExpiringSet(max_entries, clock)
        self._reported = 0

    def deny_sessions(self, sids: Iterable[str], at: float | None = None) -> None:
        """Refuse every token of these sessions issued up to ``at`` (the event's time)."""
        until = (at if at is not None else self._clock()) + self.max_token_lifetime + self.leeway
        for sid in sids:
            self.sessions.add(sid, until)
        self._warn_overflow()

    def deny_tokens(self, jtis: Iterable[str], expires_at: float) -> None:
        """Refuse these token ids until ``expires_at`` (the latest ``exp`` among them)."""
        for jti in jtis:
            self.tokens.add(jti, expires_at + self.leeway)
        self._warn_overflow()

    def is_denied(self, sid: str, jti: str) -> bool:
        return sid in self.sessions or jti in self.tokens

    @property
    def overflowed(self) -> int:
        return self.sessions.overflowed + self.tokens.overflowed

    def _warn_overflow(self) -> None:
        if self.overflowed != self._reported:
            self._reported = self.overflowed
            log.warning("revocation list full: %d entries dropped before expiry", self.overflowed)
