"""The per-worker background loop: debounced activity writes and event publishing.

Requests never wait on these writes (docs/contract.md, Activity tracking and Events).
Under gunicorn's gevent worker ``threading`` is monkey-patched, so the loop is
a greenlet; under a plain server it is a daemon thread. Tests drive it through
``run_once()`` and ``flush()`` instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from sso import metrics
from sso.backchannel import BackchannelLogout
from sso.store import REDIS_ERRORS, RedisStore

log = logging.getLogger("sso.worker")
BACKCHANNEL_FLUSH_SECONDS = 10.0  # a stopping worker (or the CLI) waits this long for a delivery round


class BackgroundWorker:
    """Buffers activity marks and events; one instance per worker process."""

    def __init__(
        self,
        store: RedisStore,
        *,
        interval: int,
        clock: Callable[[], float] = time.time,
        tick: float = 1.0,
        max_events: int = 10_000,
        max_pending: int = 100_000,
        backchannel: BackchannelLogout | None = None,
    ) -> None:
        self.store = store
        self.backchannel = backchannel
        self.interval = interval
        self.clock = clock
        self.tick = tick
        self.max_pending = max_pending
        self._pending: dict[str, tuple[str, int]] = {}
        self._events: deque[str] = deque(maxlen=max_events)
        self._oldest_queued_at: float | None = None  # when the oldest unpublished event was handed over
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()
        self.writes = 0
        self.published = 0
        self.dropped_events = 0
        self.failures = 0

    # -- called from requests (never blocks, never raises) -----------------

    def mark_active(self, user_id: str, sid: str, last_active_at: int) -> None:
        """Queue an activity write unless the stored one is younger than the interval."""
        now = int(self.clock())
        if now - last_active_at < self.interval or now <= last_active_at:
            return
        if sid in self._pending or len(self._pending) < self.max_pending:
            self._pending[sid] = (user_id, now)
            metrics.ACTIVITY_PENDING.set(len(self._pending))

    def publish(self, message: str) -> None:
        """Queue an event; when the queue is full the oldest event is dropped."""
        if len(self._events) == self._events.maxlen:
            self._dropped(1)
        self._events.append(message)
        if self._oldest_queued_at is None:
            self._oldest_queued_at = time.monotonic()
        metrics.EVENTS_QUEUED.set(len(self._events))
        self._wake.set()

    def _dropped(self, count: int) -> None:
        """Every event lost to the bound is counted and logged (README, Events and activity)."""
        self.dropped_events += count
        metrics.EVENTS_DROPPED.inc(count)
        log.warning("event queue full; dropped the %d oldest event(s), %d dropped so far", count, self.dropped_events)

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._events)

    # -- the work -------------------------------------------------------------

    def run_once(self) -> None:
        """Write pending activity and publish queued events; raise RedisError on failure.

        Whatever could not be written stays queued for the next attempt.
        """
        with self._run_lock:
            self._wake.clear()
            self._flush_activity()
            self._flush_events()
            if self.backchannel is not None and self.backchannel.pending:
                self.backchannel.start_round()  # in its own greenlet: a slow client never holds this loop

    def _flush_activity(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            written = self.store.touch_many(((user_id, sid, at) for sid, (user_id, at) in batch.items()), self.interval)
        except REDIS_ERRORS:
            for sid, mark in batch.items():
                self._pending.setdefault(sid, mark)
            raise
        finally:
            metrics.ACTIVITY_PENDING.set(len(self._pending))
        self.writes += written
        metrics.ACTIVITY_WRITES.inc(written)

    def _flush_events(self) -> None:
        if not self._events:
            return
        batch = list(self._events)
        self._events.clear()
        try:
            self.store.publish_many(batch)
        except REDIS_ERRORS:
            # Requests kept queueing while the publish was failing: the batch goes back in front of
            # them, and what no longer fits is its oldest part, counted and logged like any drop.
            room = max(0, (self._events.maxlen or len(batch)) - len(self._events))
            kept = batch[len(batch) - room :] if room < len(batch) else batch
            self._events.extendleft(reversed(kept))
            if len(kept) < len(batch):
                self._dropped(len(batch) - len(kept))
            metrics.EVENTS_FAILED.inc(len(batch))
            raise
        self.published += len(batch)
        metrics.EVENTS_PUBLISHED.inc(len(batch))
        if self._oldest_queued_at is not None:
            metrics.EVENT_PUBLISH_LAG.observe(time.monotonic() - self._oldest_queued_at)
        self._oldest_queued_at = time.monotonic() if self._events else None
        metrics.EVENTS_QUEUED.set(len(self._events))

    def flush(self) -> bool:
        """One final attempt, logging instead of raising; True when nothing is left."""
        try:
            self.run_once()
        except REDIS_ERRORS as exc:
            self.failures += 1
            log.error("background flush failed, %d items left: %s", self.pending, type(exc).__name__)
            return False
        finally:
            if self.backchannel is not None:
                self.backchannel.join(BACKCHANNEL_FLUSH_SECONDS)
        return True

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="sso-background", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the loop and flush what is pending (gunicorn's worker_exit)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        return self.flush()

    @staticmethod
    def backoff(failures: int) -> float:
        """Seconds to wait after ``failures`` failed rounds in a row: 1, 2, 4 … capped at 30."""
        return min(30.0, 0.5 * 2 ** min(failures, 6))

    def _loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if failures:
                self._stopping.wait(self.backoff(failures))
            else:
                self._wake.wait(self.tick)
            if self._stopping.is_set():
                break
            try:
                self.run_once()
                failures = 0
            except REDIS_ERRORS as exc:
                failures += 1
                self.failures += 1
                metrics.REDIS_ERRORS.labels("background").inc()
                log.warning("background write failed (attempt %d): %s", failures, type(exc).__name__)
            except Exception:  # the loop must outlive any bug in one round
                failures += 1
                self.failures += 1
                log.exception("background loop error")
