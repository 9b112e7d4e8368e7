"""The durable event log (a Redis Stream) and the pub/sub channel beside it (SPEC: Events).

One script per chunk appends each event to ``<prefix>event-log`` and then
publishes it carrying the entry id, so a subscriber that gets a message can
always find its entry, and one that was away resumes with XREAD from the last
id it saw. The stream is one key: on a cluster the script runs on that key's
primary, and PUBLISH from there reaches subscribers on every node.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sso.store.layout import Keys
from sso.store.runner import Runner

# Hard cap of the event log, whatever the retention: ~190 bytes per entry (measured with
# MEMORY USAGE on Redis 7.0), so at most ~190 MB. It binds only above ~11.5 events/s
# sustained over the default day of retention; then the log spans less than the retention.
EVENT_LOG_MAX_ENTRIES = 1_000_000
# Events per script call: a 10 000-event backlog in one call would hold Redis for ~0.4 s.
EVENT_APPEND_CHUNK = 500


class EventLog:
    def __init__(self, runner: Runner, keys: Keys, *, retention: int) -> None:
        self.runner = runner
        self.keys = keys
        self.retention = retention

    def publish_many(self, messages: Sequence[str]) -> list[str]:
        """Append each event to the log, then publish it carrying its entry id; the ids.

        One script call (one round trip) per EVENT_APPEND_CHUNK events. A failure
        raises after the chunks before it went out: the caller's retry of the whole
        batch can log and publish those a second time, under new ids.
        """
        ids: list[str] = []
        for start in range(0, len(messages), EVENT_APPEND_CHUNK):
            ids += self.append(messages[start : start + EVENT_APPEND_CHUNK], secrets.token_urlsafe(12))
        return ids

    def append(self, chunk: Sequence[str], call_id: str) -> list[str]:
        """One script call. redis-py reruns a call whose reply was lost (sso/store/connections.py);
        the call's mark, kept 60 s, makes that rerun answer the first run's ids, so a lost reply
        never logs and publishes the chunk twice."""
        return list(
            self.runner.run(
                "append_events",
                [self.keys.event_log, self.keys.event_log_call(call_id)],
                [self.keys.events_channel, self.retention, EVENT_LOG_MAX_ENTRIES, *chunk],
            )
        )
