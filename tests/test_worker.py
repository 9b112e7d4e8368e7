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
from tests.waiting import wait_for


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


@pytest.mark.skipif(not has_redis_server(), reason="needs redis-server to stop")
def test_events_lost_to_a_failed_publish_are_counted_and_logged(settings, clock, caplog):
    """Redis stopped mid-publish while requests keep queueing: the batch's oldest events that no longer fit
    are counted (dropped_events, sso_events_dropped_total) and logged; the newest are kept, in order."""
    import json
    import signal
    import threading

    import redis as redis_lib
    from prometheus_client import REGISTRY
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    server = RedisServer()
    server.start()
    # no retry and a short timeout: the publish fails once, soon, against the stopped server
    client = redis_lib.Redis(port=server.port, socket_timeout=0.5, decode_responses=True, retry=Retry(NoBackoff(), 0))
    try:
        store = RedisStore(client, settings.redis_prefix)
        worker = BackgroundWorker(store, interval=300, clock=clock, max_events=3)
        for n in range(3):
            worker.publish(envelope("session-created", str(n), [], clock.now))
        client.ping()  # connected before the server stops, so the publish hangs instead of being refused
        assert server.proc is not None
        server.proc.send_signal(signal.SIGSTOP)  # a stopped Redis: the publish hangs until its timeout
        failed: list[BaseException] = []

        def publish() -> None:
            try:
                worker.run_once()
            except RedisError as exc:
                failed.append(exc)

        before = REGISTRY.get_sample_value("sso_events_dropped_total") or 0.0
        with caplog.at_level("WARNING", logger="sso.worker"):
            thread = threading.Thread(target=publish)
            thread.start()
            wait_for(lambda: worker.pending == 0, timeout=5, what="the batch to be taken for publishing")
            for n in (3, 4):  # requests keep queueing while the publish hangs
                worker.publish(envelope("session-created", str(n), [], clock.now))
            thread.join(10)
        assert failed and not thread.is_alive()
        assert worker.pending == 3 and worker.dropped_events == 2
        assert (REGISTRY.get_sample_value("sso_events_dropped_total") or 0.0) - before == 2
        assert any("dropped the 2 oldest" in r.getMessage() for r in caplog.records if r.name == "sso.worker")

        server.proc.send_signal(signal.SIGCONT)
        subscriber = client.pubsub(ignore_subscribe_messages=True)
        subscriber.subscribe(store.events_channel)
        subscriber.get_message(timeout=1)
        worker.run_once()
        received = [subscriber.get_message(timeout=2) for _ in range(3)]
        assert [json.loads(m["data"])["user_id"] for m in received if m] == ["2", "3", "4"]
        subscriber.close()
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        client.close()
        server.cleanup()


def test_backoff_is_capped_and_never_overflows():
    """Hours of Redis outage (thousands of failed rounds) must not kill the loop."""
    assert [BackgroundWorker.backoff(n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert BackgroundWorker.backoff(6) == 30.0
    assert BackgroundWorker.backoff(5000) == 30.0
