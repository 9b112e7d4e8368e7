"""The background worker: debounce, batching, bounded queue, failure handling."""

from __future__ import annotations

import dataclasses
import json

import pytest
from redis.exceptions import RedisError

from app import redis_client
from sso.events import envelope
from sso.store import RedisStore
from sso.worker import BackgroundWorker
from tests.redis_server import RedisServer, has_redis_server


def test_mark_inside_interval_is_ignored(services, clock):
    worker = services.worker
    worker.mark_active("42", "sid", int(clock.now) - 10)
    assert worker.pending == 0
    worker.mark_active("42", "sid", int(clock.now) - 301)
    worker.mark_active("42", "sid", int(clock.now) - 301)
    assert worker.pending == 1


def test_event_queue_is_bounded_and_drops_oldest(services):
    """A slow or absent Redis cannot grow the event queue without bound."""
    worker = BackgroundWorker(services.store, interval=300, max_events=3)
    for n in range(5):
        worker.publish(envelope("session-created", str(n), [], 0))
    assert worker.pending == 3 and worker.dropped_events == 2


def test_loop_thread_publishes_and_stop_flushes(services, events, api):
    """start() runs the loop; stop() flushes what is left and ends it."""
    worker = services.worker
    worker.start()
    try:
        api.create("42")
        received = events.drain(timeout=3)
        assert [e["type"] for e in received] == ["session-created"]
    finally:
        assert worker.stop() is True
    api.create("43")  # queued after the loop stopped
    assert worker.pending == 1
    assert worker.stop() is True
    assert [e["user_id"] for e in events.drain()] == ["43"]


@pytest.mark.skipif(not has_redis_server(), reason="needs redis-server to stop and restart")
def test_failed_flush_keeps_everything_for_the_retry(settings, key_pair, clock):
    """Redis down: run_once raises, nothing is lost; Redis back: it all lands."""
    server = RedisServer()
    server.start()
    client = redis_client(server.url)
    try:
        store = RedisStore(client, dataclasses.replace(settings).redis_prefix)
        worker = BackgroundWorker(store, interval=300, clock=clock)
        _, sid = store.new_session_token("42")
        store.create_session(
            sid,
            "42",
            int(clock.now) - 1000,
            int(clock.now) + 1000,
            {"client_ip": "", "user_agent": "", "platform": "", "claims": "{}"},
        )
        worker.mark_active("42", sid, int(clock.now) - 1000)
        worker.publish(envelope("session-created", "42", [sid], clock.now))
        server.stop()
        with pytest.raises(RedisError):
            worker.run_once()
        assert worker.pending == 2
        assert worker.flush() is False and worker.failures == 1
        server.start()  # empty again: recreate the record the write targets
        store.create_session(
            sid,
            "42",
            int(clock.now) - 1000,
            int(clock.now) + 1000,
            {"client_ip": "", "user_agent": "", "platform": "", "claims": "{}"},
        )
        subscriber = client.pubsub(ignore_subscribe_messages=True)
        subscriber.subscribe(store.events_channel)
        subscriber.get_message(timeout=1)
        worker.run_once()
        assert worker.pending == 0 and worker.writes == 1 and worker.published == 1
        assert int(client.hget(store.keys.session(sid), "last_active_at")) == int(clock.now)
        message = subscriber.get_message(timeout=2)
        assert message is not None
        ((entry_id, _),) = client.xrange(store.event_log_key)  # logged once, under the id it was published with
        assert json.loads(message["data"])["id"] == entry_id
        subscriber.close()
    finally:
        client.close()
        server.cleanup()


def test_backoff_is_capped_and_never_overflows():
    """Hours of Redis outage (thousands of failed rounds) must not kill the loop."""
    assert [BackgroundWorker.backoff(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert BackgroundWorker.backoff(6) == 30.0
    assert BackgroundWorker.backoff(5000) == 30.0
