"""Follows the service's events: the durable log is the source, pub/sub only a wake-up.

One loop (a thread, or a greenlet under gevent's monkey-patching):

1. subscribe to ``<prefix>events``, then read ``<prefix>event-log`` with ``XREAD``
   from the last id seen, so nothing falls between the two;
2. wait for a pub/sub message or ``poll_interval`` seconds, whichever comes first,
   and read the log again from the last id. A pub/sub message is a hint, never the
   data: a lost one costs at most ``poll_interval`` of delay. (A pub/sub message
   without an ``id`` comes from a service that keeps no log; it is handled as it
   comes, at most once.)
3. every event updates the revocation list, then goes to the callbacks registered
   for its type (and to those for ``"*"``), in log order;
4. on a Redis error: drop the connections, retry with exponential backoff and
   jitter, and on reconnecting check whether the log was trimmed past the last id
   seen (``XINFO STREAM``'s ``max-deleted-entry-id``), or the stream vanished, or the
   last id is older than the retention. Then events were missed, and the listener
   resynchronises: it asks ``/session/status`` about every session this instance
   accepted tokens for (and any the application names), denies the dead ones and
   hands each callback a ``session-invalidated`` event with ``reason: "resync"``.

At the first start with no last id it replays the last ``max_token_lifetime``
seconds of the log, so a fresh instance refuses the tokens revoked just before it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.exceptions import RedisError, ResponseError

from fluxer_sso_client import events
from fluxer_sso_client._http import backoff_delay
from fluxer_sso_client.errors import ServiceError, VerificationUnavailable
from fluxer_sso_client.events import Event
from fluxer_sso_client.revocation import RevocationList
from fluxer_sso_client.service import ServiceClient

log = logging.getLogger("fluxer_sso_client.listener")
Callback = Callable[[Event], Any]
STOP_CHECK = 0.5  # seconds: how long a waiting loop takes to notice stop()


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class EventListener:
    """Reads the event log from the last id it saw and keeps a RevocationList current."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "sso:",
        revocations: RevocationList | None = None,
        service: ServiceClient | None = None,
        seen_sessions: Callable[[], Iterable[str]] | None = None,
        last_id: str | None = None,
        retention: float = 86400.0,
        poll_interval: float = 5.0,
        batch: int = 500,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        fail_closed_after: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self.channel = f"{prefix}events"
        self.stream = f"{prefix}event-log"
        self.revocations = revocations if revocations is not None else RevocationList(clock=clock)
        self.service = service
        self._seen_sessions = seen_sessions
        self._extra_sessions: list[Callable[[], Iterable[str]]] = []
        self.retention = retention
        self.poll_interval = poll_interval
        self.batch = batch
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.fail_closed_after = fail_closed_after
        self._clock = clock
        self.last_id = last_id or f"{int((clock() - self.revocations.max_token_lifetime) * 1000)}-0"
        self._callbacks: dict[str, list[Callback]] = defaultdict(list)
        self._pubsub: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._caught_up_at = clock()
        self.connected = False
        self.needs_resync = False
        self.handled = 0
        self.resyncs = 0
        self.failures = 0

    # --- configuration ---------------------------------------------------------------

    def on(self, event_type: str, callback: Callback) -> Callback:
        """Call ``callback(event)`` for each event of this type (``"*"``: every event)."""
        self._callbacks[event_type].append(callback)
        return callback

    def check_sessions(self, provider: Callable[[], Iterable[str]]) -> None:
        """Also re-check these session hashes on a resync (the ones with open WebSockets, say)."""
        self._extra_sessions.append(provider)

    # --- state -----------------------------------------------------------------------

    @property
    def lag(self) -> float:
        """Seconds since the listener last knew it had every event: 0 while connected."""
        return 0.0 if self.connected else max(0.0, self._clock() - self._caught_up_at)

    def health(self) -> None:
        """The strict outage mode: refuse to let tokens verify while blind for too long."""
        if self.fail_closed_after is not None and self.lag > self.fail_closed_after:
            raise VerificationUnavailable(f"session events unavailable for {self.lag:.0f}s")

    # --- the loop --------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_forever, name="fluxer-sso-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else STOP_CHECK + 10)
            self._thread = None
        self._disconnect()

    def run_forever(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self.run_once()
                attempt = 0
            except (RedisError, OSError) as exc:
                self._lost(exc)
                delay = backoff_delay(attempt, self.backoff, self.max_backoff)
                attempt += 1
                log.warning("event listener: Redis unavailable (%s); retrying in %.1fs", type(exc).__name__, delay)
                self._stop.wait(delay)
            except Exception:  # never die: log and keep going
                log.exception("event listener: unexpected error")
                self._stop.wait(self.backoff)

    def run_once(self, timeout: float | None = None) -> int:
        """Connect if needed, wait for a hint (up to ``timeout``), read the log; events handled.

        Raises RedisError when Redis is unreachable (run_forever backs off and retries).
        """
        handled = 0
        if self._pubsub is None:
            handled += self._connect()
        else:
            handled += self._wait(self.poll_interval if timeout is None else timeout)
        handled += self._catch_up()
        if self.needs_resync:
            self._resync()
        return handled

    def _connect(self) -> int:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)  # first: what is published from now on wakes us
            self._check_gap()
        except BaseException:
            pubsub.close()
            raise
        self._pubsub = pubsub
        return 0

    def _wait(self, timeout: float) -> int:
        handled = 0
        deadline = time.monotonic() + timeout
        message = self._pubsub.get_message(timeout=min(timeout, STOP_CHECK))
        while message is None and not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            message = self._pubsub.get_message(timeout=min(left, STOP_CHECK))  # stop() is noticed this fast
        while message is not None:
            if message.get("type") == "message":
                handled += self._hint(message["data"])
            message = self._pubsub.get_message(timeout=0)
        return handled

    def _hint(self, data: Any) -> int:
        try:
            event = events.parse(data)
        except ValueError:
            log.warning("event listener: ignoring a malformed pub/sub message")
            return 0
        if event.id is not None:
            return 0  # in the log: _catch_up reads it in order
        self._handle(event)  # a service without the log: this message is all there is
        return 1

    def _catch_up(self) -> int:
        handled = 0
        while True:
            started = self._clock()
            reply: Any = self._redis.xread({self.stream: self.last_id}, count=self.batch)  # RESP2 list
            entries = reply[0][1] if reply else []
            for entry_id, fields in entries:
                entry_id = _text(entry_id)
                raw = fields.get("event", fields.get(b"event"))
                try:
                    event = events.parse(raw, entry_id) if raw is not None else None
                except ValueError:
                    event = None
                if event is None:
                    log.warning("event listener: skipping malformed log entry %s", entry_id)
                else:
                    self._handle(event)
                    handled += 1
                self.last_id = entry_id
            if len(entries) < self.batch:
                self._caught_up_at = started
                self.connected = True
                return handled

    def _check_gap(self) -> None:
        """Decide whether events after last_id may have been lost (trimmed, or Redis lost its data)."""
        too_old = events.entry_time(self.last_id) < self._clock() - self.retention
        try:
            info = self._redis.xinfo_stream(self.stream)
        except ResponseError:  # no such stream: never written, or Redis lost it while we were away
            if too_old or self.failures:
                self.needs_resync = True
            return
        last = _id_key(self.last_id)
        deleted = info.get("max-deleted-entry-id")  # XDEL moves it; trimming does not
        if deleted is not None and _id_key(_text(deleted)) > last:
            self.needs_resync = True
            return
        added, length = info.get("entries-added"), info.get("length", 0)
        trimmed = too_old if added is None else added > length  # Redis 6 has no entries-added
        first = info.get("first-entry")
        oldest_kept = _id_key(_text(first[0] if first else info.get("last-generated-id", "0-0")))
        if trimmed and oldest_kept > last:  # the entries at and after last_id are not all still there
            self.needs_resync = True

    def _resync(self) -> None:
        """Ask the service which of our sessions are still live; deny and announce the dead."""
        if self.service is None:
            log.warning("event listener: events were missed and no service client is set to resynchronise")
            self.needs_resync = False
            return
        hashes: set[str] = set(self._seen_sessions() if self._seen_sessions else ())
        for provider in self._extra_sessions:
            hashes.update(provider())
        try:
            status = self.service.session_status(hashes) if hashes else {}
        except ServiceError as exc:
            if exc.status == 404:
                log.warning("event listener: the service has no /session/status; cannot resynchronise")
                self.needs_resync = False
            else:
                log.warning("event listener: resync failed (%s); retrying", exc.error)
            return
        dead = tuple(sorted(h for h, live in status.items() if not live))
        self.needs_resync = False
        self.resyncs += 1
        log.info("event listener: resynchronised %d sessions, %d ended while away", len(status), len(dead))
        if dead:
            self._handle(
                Event(
                    type=events.SESSION_INVALIDATED, user_id=None, session_id_hashes=dead, at=self._clock(),
                    reason=events.RESYNC,
                )
            )  # fmt: skip

    def _handle(self, event: Event) -> None:
        if event.ends_sessions:
            self.revocations.deny_sessions(event.session_id_hashes, at=event.at)
        elif event.type == events.TOKENS_REVOKED:
            expires = event.expires_at
            if expires is None:  # an older event without it: the longest a token can live
                expires = event.at + self.revocations.max_token_lifetime
            self.revocations.deny_tokens(event.jtis, expires)
        self.handled += 1
        for callback in (*self._callbacks.get(event.type, ()), *self._callbacks.get("*", ())):
            try:
                callback(event)
            except Exception:
                log.exception("event listener: a %s callback failed", event.type)

    def _lost(self, exc: BaseException) -> None:
        self.connected = False  # lag now grows from the last catch-up
        self.failures += 1
        self._disconnect()

    def _disconnect(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except (RedisError, OSError):
                pass
            self._pubsub = None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
