"""EventListener against a real Redis: the log read in order, resumed, woken by pub/sub, resilient."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
import redis as redis_lib
from events_log import append, event
from fluxer_sso_client import EventListener, RevocationList, ServiceClient
from fluxer_sso_client.errors import VerificationUnavailable
from fluxer_sso_client.events import Event
from harness import RedisProcess, wait_for
from local_tokens import Clock

S1, S2, S3 = "A" * 43, "B" * 43, "C" * 43


@pytest.fixture
def received() -> list[Event]:
    return []


@pytest.fixture
def listener(redis: redis_lib.Redis, prefix: str, received: list[Event]) -> Iterator[EventListener]:
    lst = EventListener(redis, prefix=prefix, poll_interval=0.2)
    lst.on("*", received.append)
    yield lst
    lst.stop()


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    server = RedisProcess(aof=True)
    server.start()
    yield server
    server.cleanup()


def test_log_entries_are_handled_in_order_and_update_the_revocations(redis, prefix, listener, received) -> None:
    """Each type reaches the callbacks in log order; invalidations and revocations are denied."""
    ids = [
        append(redis, prefix, event("session-created", [S3]), hint=False),
        append(redis, prefix, event("session-invalidated", [S1], reason="logout"), hint=False),
        append(redis, prefix, event("global-logout", [S2]), hint=False),
        append(
            redis,
            prefix,
            event("tokens-revoked", [S3], jtis=["j1"], reason="revoked", expires_at="2099-01-01T00:00:00Z"),
            hint=False,
        ),  # fmt: skip
    ]
    assert listener.run_once(timeout=0) == 4
    assert [e.type for e in received] == ["session-created", "session-invalidated", "global-logout", "tokens-revoked"]
    assert [e.id for e in received] == ids and listener.last_id == ids[-1]
    assert received[1].reason == "logout" and received[3].jtis == ("j1",)
    rev = listener.revocations
    assert rev.is_denied(S1, "x") and rev.is_denied(S2, "x") and rev.is_denied(S3, "j1")
    assert not rev.is_denied(S3, "j2")  # session-created denies nothing; only the listed jti


def test_callbacks_per_type_and_a_failing_callback_stops_nothing(redis, prefix, listener, received, caplog) -> None:
    """A callback that raises is logged; the others and later events still run."""
    ended: list[str] = []
    listener.on("session-invalidated", lambda e: 1 / 0)
    listener.on("session-invalidated", lambda e: ended.extend(e.session_id_hashes))
    append(redis, prefix, event("session-invalidated", [S1]), hint=False)
    append(redis, prefix, event("session-created", [S2]), hint=False)
    with caplog.at_level(logging.ERROR, "fluxer_sso_client"):
        assert listener.run_once(timeout=0) == 2
    assert ended == [S1] and len(received) == 2
    assert "callback failed" in caplog.text


def test_a_new_listener_resumes_after_the_last_id(redis, prefix, listener, received) -> None:
    """Started with last_id, a listener gets exactly the entries after it."""
    append(redis, prefix, event("session-created", [S1]), hint=False)
    listener.run_once(timeout=0)
    append(redis, prefix, event("session-invalidated", [S2]), hint=False)
    later: list[Event] = []
    resumed = EventListener(redis, prefix=prefix, last_id=listener.last_id)
    resumed.on("*", later.append)
    resumed.run_once(timeout=0)
    resumed.stop()
    assert [e.session_id_hashes for e in later] == [(S2,)]


def test_a_first_start_replays_only_the_revocation_window(redis, prefix, received) -> None:
    """Without a last id, the log is read from now - max_token_lifetime: old entries are skipped."""
    old_ms = int((time.time() - 7200) * 1000)
    append(redis, prefix, event("session-invalidated", [S1]), hint=False, entry_id=f"{old_ms}-0")
    append(redis, prefix, event("session-invalidated", [S2]), hint=False)
    lst = EventListener(redis, prefix=prefix, revocations=RevocationList(max_token_lifetime=3600))
    lst.on("*", received.append)
    lst.run_once(timeout=0)
    lst.stop()
    assert [e.session_id_hashes for e in received] == [(S2,)]


def test_a_pubsub_hint_wakes_the_loop_at_once(redis, prefix, received) -> None:
    """poll_interval 30 s, yet an entry with its hint is handled within a fraction of a second."""
    lst = EventListener(redis, prefix=prefix, poll_interval=30)
    lst.on("*", received.append)
    lst.start()
    try:
        wait_for(lambda: lst.connected, timeout=5, what="the listener to connect")
        wait_for(lambda: redis.pubsub_numsub(f"{prefix}events")[0][1], timeout=5, what="the subscription")
        started = time.monotonic()
        append(redis, prefix, event("session-invalidated", [S1]))
        wait_for(lambda: received, timeout=5, what="the event")
        delay = time.monotonic() - started
    finally:
        lst.stop()
    assert delay < 1.0, delay
    print(f"hint-to-callback delay: {delay * 1000:.1f} ms")


def test_a_lost_hint_costs_at_most_the_poll_interval(redis, prefix, listener, received) -> None:
    """An entry whose pub/sub message never came is read at the next poll."""
    listener.start()
    wait_for(lambda: listener.connected, timeout=5, what="the listener to connect")
    append(redis, prefix, event("global-logout", [S1]), hint=False)
    wait_for(lambda: received, timeout=3, what="the polled event")
    assert received[0].type == "global-logout"


def test_a_hint_without_a_log_entry_is_handled_as_it_comes(redis, prefix, listener, received) -> None:
    """A service that keeps no log publishes id-less messages: they are delivered (at most once)."""
    listener.start()
    wait_for(lambda: redis.pubsub_numsub(f"{prefix}events")[0][1], timeout=5, what="the subscription")
    redis.publish(f"{prefix}events", json.dumps(event("session-invalidated", [S1], reason="invalidated")))
    wait_for(lambda: received, timeout=3, what="the pub/sub event")
    assert received[0].id is None and listener.revocations.is_denied(S1, "x")


def test_malformed_entries_are_skipped(redis, prefix, listener, received, caplog) -> None:
    """Garbage in the log or on the channel is logged and passed over; the next event still arrives."""
    redis.xadd(f"{prefix}event-log", {"event": "{not json"})
    redis.xadd(f"{prefix}event-log", {"other": "field"})
    append(redis, prefix, event("session-created", [S1]), hint=False)
    with caplog.at_level(logging.WARNING, "fluxer_sso_client"):
        assert listener.run_once(timeout=0) == 1
    assert [e.type for e in received] == ["session-created"]
    assert caplog.text.count("malformed log entry") == 2


def test_redis_loss_is_survived_with_backoff_and_nothing_is_missed(private_redis, received) -> None:
    """Redis killed and restarted (AOF): the listener reconnects and reads what was written meanwhile."""
    client = redis_lib.Redis.from_url(private_redis.url, decode_responses=True, socket_timeout=2)
    lst = EventListener(client, prefix="p:", poll_interval=0.2, backoff=0.05, max_backoff=0.2)
    lst.on("*", received.append)
    lst.start()
    try:
        wait_for(lambda: lst.connected, timeout=5, what="the listener to connect")
        append(client, "p:", event("session-created", [S1]))
        wait_for(lambda: len(received) == 1, timeout=5, what="the first event")
        private_redis.kill()
        wait_for(lambda: not lst.connected and lst.failures >= 2, timeout=10, what="the listener to notice")
        assert lst.lag > 0
        private_redis.start()
        append(client, "p:", event("session-invalidated", [S2]), hint=False)  # written while it was away
        wait_for(lambda: len(received) == 2, timeout=10, what="the event written during the outage")
        assert lst.connected and lst.lag == 0 and not lst.needs_resync
    finally:
        lst.stop()
        client.close()
    assert [e.session_id_hashes for e in received] == [(S1,), (S2,)]


def test_a_log_trimmed_past_the_last_id_means_resync(redis, prefix, received, caplog) -> None:
    """Entries deleted after the last id seen (retention) are detected from XINFO's max-deleted-entry-id."""
    first = append(redis, prefix, event("session-created", [S1]), hint=False)
    append(redis, prefix, event("session-invalidated", [S2]), hint=False)
    third = append(redis, prefix, event("session-invalidated", [S3]), hint=False)
    redis.xtrim(f"{prefix}event-log", minid=third, approximate=False)
    lst = EventListener(redis, prefix=prefix, last_id=first)
    lst.on("*", received.append)
    with caplog.at_level(logging.WARNING, "fluxer_sso_client"):
        lst.run_once(timeout=0)
    lst.stop()
    assert "events were missed" in caplog.text
    assert [e.session_id_hashes for e in received] == [(S3,)]  # what survived is still delivered


def test_an_old_last_id_on_a_vanished_log_means_resync(redis, prefix, caplog) -> None:
    """Away longer than the retention, and the log is gone: resync, not silence."""
    old = f"{int((time.time() - 90000) * 1000)}-0"
    lst = EventListener(redis, prefix=prefix, last_id=old, retention=86400)
    with caplog.at_level(logging.WARNING, "fluxer_sso_client"):
        lst.run_once(timeout=0)
    lst.stop()
    assert "events were missed" in caplog.text


def test_strict_mode_refuses_verification_when_blind_too_long(private_redis) -> None:
    """fail_closed_after: once Redis has been gone that long, health() raises VerificationUnavailable."""
    clock = Clock()
    client = redis_lib.Redis.from_url(private_redis.url, decode_responses=True, socket_timeout=1)
    lst = EventListener(client, prefix="p:", fail_closed_after=60, clock=clock)
    lst.run_once(timeout=0)
    lst.health()  # connected: fine
    private_redis.kill()
    with pytest.raises((redis_lib.ConnectionError, redis_lib.TimeoutError)):
        lst.run_once(timeout=0.1)
    lst._lost(RuntimeError())  # what run_forever does on that error
    clock.now += 59
    lst.health()  # blind, but within the allowance
    clock.now += 2
    with pytest.raises(VerificationUnavailable):
        lst.health()
    private_redis.start()
    lst.run_once(timeout=0)
    lst.health()  # caught up again: verification resumes
    lst.stop()
    client.close()


def test_the_listener_runs_as_a_greenlet_under_gevent(redis_server, prefix) -> None:
    """With gevent's monkey-patching the loop is a greenlet and still delivers events."""
    script = textwrap.dedent(f"""
        from gevent import monkey; monkey.patch_all()
        import json, gevent, redis
        from fluxer_sso_client import EventListener
        client = redis.Redis.from_url({redis_server.url!r}, decode_responses=True)
        got = []
        lst = EventListener(client, prefix={prefix!r}, poll_interval=10)
        lst.on("*", got.append)
        lst.start()
        while not lst.connected:
            gevent.sleep(0.01)
        while not client.pubsub_numsub({prefix + "events"!r})[0][1]:
            gevent.sleep(0.01)
        body = {{"type": "global-logout", "user_id": "1", "session_id_hashes": ["x"], "at": "2026-01-01T00:00:00Z"}}
        entry = client.xadd({prefix + "event-log"!r}, {{"event": json.dumps(body)}})
        client.publish({prefix + "events"!r}, json.dumps({{"id": entry, **body}}))
        with gevent.Timeout(5):
            while not got:
                gevent.sleep(0.01)
        print(monkey.is_module_patched("threading"), got[0].type)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "global-logout"]


def test_a_resync_asks_the_status_endpoint_and_denies_the_dead(redis, prefix, received, scripted) -> None:
    """After a gap: /session/status about the seen sessions; dead ones denied and announced with reason 'resync'."""
    url, handler = scripted
    handler.answers[:] = [(200, {}, {"sessions": {S1: False, S2: True}})]
    first = append(redis, prefix, event("session-created", [S3]), hint=False)
    append(redis, prefix, event("session-created", [S3]), hint=False)
    redis.xdel(f"{prefix}event-log", redis.xrange(f"{prefix}event-log")[1][0])  # a missed entry
    lst = EventListener(redis, prefix=prefix, last_id=first, seen_sessions=lambda: [S1],
                        service=ServiceClient(url, "s" * 40, sleep=lambda _: None))  # fmt: skip
    lst.check_sessions(lambda: [S2])
    lst.on("*", received.append)
    lst.run_once(timeout=0)
    lst.stop()
    assert handler.seen == ["/session/status"] and lst.resyncs == 1 and not lst.needs_resync
    assert [(e.type, e.reason, e.session_id_hashes) for e in received] == [("session-invalidated", "resync", (S1,))]
    assert lst.revocations.is_denied(S1, "x") and not lst.revocations.is_denied(S2, "x")


def test_a_failed_resync_is_retried_and_a_missing_endpoint_is_reported(redis, prefix, scripted, caplog) -> None:
    """503 from /session/status keeps needs_resync for the next loop; a 404 gives up with a warning."""
    url, handler = scripted
    handler.answers[:] = [(503, {}, {"error": "temporarily_unavailable"})] * 2 + [(404, {}, {"error": "not_found"})]
    lst = EventListener(redis, prefix=prefix, seen_sessions=lambda: [S1],
                        service=ServiceClient(url, "s" * 40, retries=1, sleep=lambda _: None))  # fmt: skip
    lst.needs_resync = True
    with caplog.at_level(logging.WARNING, "fluxer_sso_client"):
        lst.run_once(timeout=0)
        assert lst.needs_resync and "resync failed" in caplog.text
        lst.run_once(timeout=0)
    lst.stop()
    assert not lst.needs_resync and "no /session/status" in caplog.text
