"""Events: the durable log (a Redis Stream written before pub/sub), reasons, and docs/events.schema.json."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import requests

import sso.store.eventlog
from sso.cookies import COOKIE_NAME
from sso.events import envelope
from tests.conftest import REDIRECT_URI, SERVICE_SECRET
from tests.server import GunicornServer, server_env
from tests.waiting import wait_for

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "events.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema_rs.validator_for(SCHEMA)
APP = "http://app.test"


class Published:
    """Drives the worker once and returns what went out, both ways, checked against each other."""

    def __init__(self, services: Any, events: Any, redis: Any) -> None:
        self.services, self.events, self.redis = services, events, redis
        self.last_id = "0-0"

    def __call__(self) -> list[dict[str, Any]]:
        self.services.worker.run_once()
        messages = self.events.drain()
        entries = self.redis.xrange(self.services.store.event_log_key, f"({self.last_id}", "+")
        assert [m["id"] for m in messages] == [entry_id for entry_id, _ in entries]  # same events, same order
        for message, (entry_id, fields) in zip(messages, entries, strict=True):
            assert set(fields) == {"event"}
            logged = json.loads(fields["event"])
            assert "id" not in logged and {**logged, "id": entry_id} == message
            VALIDATOR.validate(message)  # the pub/sub form
            VALIDATOR.validate(logged)  # the stream form
        if entries:
            self.last_id = entries[-1][0]
        return messages


@pytest.fixture
def published(services, events, redis) -> Published:
    return Published(services, events, redis)


def test_the_schema_is_valid_draft_2020_12():
    assert jsonschema_rs.meta.is_valid(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_session_created_and_api_invalidation(api, published):
    """session-created, then session-invalidated with reason invalidated; both in the log and on pub/sub."""
    body = api.create("42")
    (created,) = published()
    assert (created["type"], created["user_id"], created["session_id_hashes"]) == (
        "session-created",
        "42",
        [body["session_id_hash"]],
    )
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [body["session_id_hash"]]})
    (ended,) = published()
    assert (ended["type"], ended["reason"]) == ("session-invalidated", "invalidated")
    assert list(ended) == ["id", "type", "user_id", "session_id_hashes", "reason", "at"]


def test_logout_reasons_and_global_logout(api, client, oauth, published):
    """POST /logout and GET /logout end a session with reason logout; invalidate=all is a global-logout."""
    a, b = api.create("42"), api.create("42")
    published()
    client.set_cookie(COOKIE_NAME, a["token"], domain="localhost")
    assert client.post("/logout", data={"invalidate": "session"}, headers={"Origin": APP}).status_code == 204
    (event,) = published()
    assert (event["type"], event["reason"], event["session_id_hashes"]) == (
        "session-invalidated",
        "logout",
        [a["session_id_hash"]],
    )

    oauth.login()
    tokens = oauth.tokens()
    published()
    response = oauth.client.get(
        "/logout", query_string={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": REDIRECT_URI}
    )
    assert response.status_code == 303
    (event,) = published()
    assert (event["type"], event["reason"]) == ("session-invalidated", "logout")

    client.set_cookie(COOKIE_NAME, b["token"], domain="localhost")
    assert client.post("/logout?invalidate=all", headers={"Origin": APP}).status_code == 204
    (event,) = published()
    assert event["type"] == "global-logout" and "reason" not in event
    assert b["session_id_hash"] in event["session_id_hashes"]


def test_operator_cli_reason_is_admin(app, api, published):
    """`sso end-session` publishes reason admin, even for a hash that begins with "-"; `sso end-all` a global-logout."""
    a, b = api.create("-42"), api.create("-42")
    published()
    runner = app.test_cli_runner()
    dashed = "-" + a["session_id_hash"][1:]  # a valid hash shape; the CLI must not read it as an option
    result = runner.invoke(args=["sso", "end-session", "-42", dashed, a["session_id_hash"]])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"invalidated": [a["session_id_hash"]], "events_published": True}
    (event,) = published()
    assert (event["type"], event["reason"], event["user_id"]) == ("session-invalidated", "admin", "-42")
    result = runner.invoke(args=["sso", "end-all", "-42"])
    assert json.loads(result.output)["invalidated"] == [b["session_id_hash"]]
    (event,) = published()
    assert event["type"] == "global-logout"


def test_the_schema_refuses_what_the_catalogue_does_not_have():
    """The schema can fail: unknown type, missing reason, foreign field, bad hash, bad id."""
    good = json.loads(envelope("session-invalidated", "42", ["a" * 43], 0, reason="admin"))
    assert VALIDATOR.is_valid(good) and VALIDATOR.is_valid({**good, "id": "1-0"})
    for bad in (
        {**good, "type": "session-updated"},
        {k: v for k, v in good.items() if k != "reason"},
        {**good, "reason": "because"},
        {**good, "token": "x"},
        {**good, "session_id_hashes": ["short"]},
        {**good, "session_id_hashes": []},
        {**good, "id": "latest"},
        {**good, "at": "2026-12-01 10:00"},
        {**good, "type": "global-logout"},  # global-logout carries no reason
    ):
        assert not VALIDATOR.is_valid(bad), bad
    revoked = {
        **{k: good[k] for k in ("user_id", "session_id_hashes", "at")},
        **{"type": "tokens-revoked", "jtis": ["j" * 22], "expires_at": good["at"], "reason": "refresh-reuse"},
    }
    assert VALIDATOR.is_valid(revoked)
    assert not VALIDATOR.is_valid({**revoked, "jtis": []})
    assert not VALIDATOR.is_valid({k: v for k, v in revoked.items() if k != "expires_at"})


def test_envelope_refuses_a_wrong_reason():
    with pytest.raises(ValueError):
        envelope("session-invalidated", "42", ["a" * 43], 0)
    with pytest.raises(ValueError):
        envelope("session-invalidated", "42", ["a" * 43], 0, reason="because")
    with pytest.raises(ValueError):
        envelope("global-logout", "42", ["a" * 43], 0, reason="admin")


# -- retention and bounds --------------------------------------------------------------------


def test_log_keeps_the_retention_and_trims_what_is_older(api, services, redis):
    """Entries older than SSO_EVENT_LOG_RETENTION go (MINID ~, by Redis' clock); younger ones stay."""
    key = services.store.event_log_key
    now_ms = int(redis.time()[0]) * 1000
    retention_ms = services.settings.event_log_retention * 1000
    for n in range(300):  # three stream nodes' worth, so the approximate trim has whole nodes to drop
        redis.xadd(key, {"event": "{}"}, id=f"{now_ms - retention_ms - 3_600_000}-{n}")
    young = [redis.xadd(key, {"event": "{}"}, id=f"{now_ms - retention_ms + 60_000}-{n}") for n in range(5)]
    api.create("42")
    services.worker.run_once()
    ids = [entry_id for entry_id, _ in redis.xrange(key)]
    assert len(ids) < 300 and set(young) <= set(ids)
    assert 0 < redis.ttl(key) <= services.settings.event_log_retention + 60


def test_log_is_capped_in_entries(api, services, redis, monkeypatch):
    """Above the hard cap (MAXLEN ~) the oldest entries go, whatever their age: memory stays bounded."""
    monkeypatch.setattr(sso.store.eventlog, "EVENT_LOG_MAX_ENTRIES", 200)
    for _ in range(700):
        services.worker.publish(envelope("session-created", "42", ["a" * 43], time.time()))
    services.worker.run_once()
    assert 200 <= redis.xlen(services.store.event_log_key) <= 300  # ~: within one stream node of the cap


def test_a_large_backlog_goes_out_in_order(services, events, redis):
    """A backlog longer than one script call's chunk is logged and published completely and in order."""
    for n in range(sso.store.eventlog.EVENT_APPEND_CHUNK * 2 + 7):
        services.worker.publish(envelope("session-created", str(n), ["a" * 43], time.time()))
    services.worker.run_once()
    logged = [json.loads(fields["event"])["user_id"] for _, fields in redis.xrange(services.store.event_log_key)]
    assert logged == [str(n) for n in range(sso.store.eventlog.EVENT_APPEND_CHUNK * 2 + 7)]
    assert [m["user_id"] for m in events.drain()] == logged


# -- through real gunicorn -------------------------------------------------------------------


def test_gunicorn_events_missed_by_subscribers_are_read_back_from_the_log(settings, redis, prefix):
    """Under gunicorn: the pub/sub message's id is its log entry's id, and an event published while
    nobody listened is read back with XREAD from the last id seen."""
    headers = {"Authorization": f"Service {SERVICE_SECRET}"}
    key = f"{prefix}event-log"
    srv = GunicornServer(server_env(settings), workers=1)
    srv.start()
    subscriber = redis.pubsub(ignore_subscribe_messages=True)
    try:
        subscriber.subscribe(f"{prefix}events")
        subscriber.get_message(timeout=1)
        first = requests.post(f"{srv.url}/session/create", json={"user_id": "42"}, headers=headers, timeout=5)
        assert first.status_code == 201, first.text
        message = wait_for(lambda: subscriber.get_message(timeout=0.2), timeout=10, what="the pub/sub message")
        seen = json.loads(message["data"])
        ((entry_id, fields),) = redis.xrange(key, seen["id"], seen["id"])
        assert {**json.loads(fields["event"]), "id": entry_id} == seen
        assert seen["session_id_hashes"] == [first.json()["session_id_hash"]]
        subscriber.close()  # the API instance goes away

        missed = requests.post(f"{srv.url}/session/create", json={"user_id": "43"}, headers=headers, timeout=5)
        assert missed.status_code == 201, missed.text
        ((_, entries),) = wait_for(lambda: redis.xread({key: seen["id"]}), timeout=10, what="the missed event")
        (missed_id, missed_fields), *rest = entries
        assert rest == []
        event = json.loads(missed_fields["event"])
        assert (event["type"], event["user_id"]) == ("session-created", "43")
        assert event["session_id_hashes"] == [missed.json()["session_id_hash"]]
        VALIDATOR.validate(event)
    finally:
        subscriber.close()
        assert srv.stop() == 0


def test_a_rerun_append_call_logs_and_publishes_nothing_twice(services, events, redis, keys):
    """redis-py runs a script call again when its reply was lost; that rerun must not log or
    publish the chunk a second time, and answers the ids the first run wrote."""
    log = services.store.event_log
    chunk = [envelope("session-created", str(n), ["a" * 43], time.time()) for n in range(3)]
    first = log.append(chunk, "call-1")
    again = log.append(chunk, "call-1")
    assert again == first and len(first) == 3
    assert [entry_id for entry_id, _ in redis.xrange(services.store.event_log_key)] == first
    assert [m["id"] for m in events.drain()] == first
    assert 0 < redis.ttl(keys.event_log_call("call-1")) <= 60
    other = log.append(chunk, "call-2")  # another call with the same events is another append
    assert len(redis.xrange(services.store.event_log_key)) == 6 and set(other).isdisjoint(first)


def test_the_append_mark_shares_the_event_log_slot_and_the_prefix(keys, prefix):
    """In the log's slot (one script on a cluster), and under the prefix (a Redis ACL user confined to
    the deployment's keys, ~<prefix>*, must be able to write it)."""
    from redis.crc import key_slot

    assert key_slot(keys.event_log_call("x").encode()) == key_slot(keys.event_log.encode())
    assert keys.event_log_call("x").startswith(prefix)


def test_an_acl_user_confined_to_the_prefix_can_append(single_redis_url, prefix, keys, redis):
    """Every key the append touches is under SSO_REDIS_PREFIX: a Redis user allowed only ~<prefix>*
    (and its channels) logs and publishes."""
    import uuid

    import redis as redis_lib

    from sso.store.eventlog import EventLog
    from sso.store.runner import Runner

    admin = redis_lib.Redis.from_url(single_redis_url)
    user, password = f"sso-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", f"~{prefix}*", f"&{prefix}*", "+@all")
    confined = redis_lib.Redis.from_url(single_redis_url, username=user, password=password, decode_responses=True)
    try:
        log = EventLog(Runner(confined, wait_for_replica=False), keys, retention=3600)
        ids = log.append([envelope("session-created", "42", ["a" * 43], time.time())], "call-acl")
        assert len(ids) == 1 and redis.xlen(keys.event_log) == 1
    finally:
        confined.close()
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()
