"""The /session/* service API through the real Flask app and a real Redis."""

from __future__ import annotations

import dataclasses
import re

import pytest

from app import create_app
from sso.digests import token_hash
from tests.conftest import OTHER_SECRET, SERVICE_SECRET, live_keys

pytestmark = pytest.mark.topologies

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_create_returns_token_once_and_stores_only_its_hash(api, redis, prefix, services, keys):
    """The token comes back once; Redis holds its hash and never the token."""
    body = api.create(
        "42",
        client_ip="203.0.113.9",
        user_agent="Fluxer/1.0",
        platform="web",
        claims={"name": "Ada", "email": "ada@example.com"},
    )
    assert set(body) == {"token", "session_id_hash", "user_id", "created_at", "expires_at"}
    assert len(body["token"]) >= 43 and body["session_id_hash"] == token_hash(body["token"])
    assert ISO.match(body["created_at"]) and ISO.match(body["expires_at"])
    stored = set(redis.scan_iter(match=f"{prefix}*"))
    assert stored == {keys.session(body["session_id_hash"]), keys.index("42")}
    for key in stored:
        assert 0 < redis.ttl(key) <= services.settings.session_ttl
        assert body["token"] not in key
    record = redis.hgetall(keys.session(body["session_id_hash"]))
    assert body["token"] not in str(record)
    assert record["client_ip"] == "203.0.113.9" and record["platform"] == "web"


def test_create_publishes_session_created(api, events, services):
    """session-created goes out from the worker, not the request."""
    body = api.create("42")
    assert events.drain(timeout=0.2) == []
    services.worker.run_once()
    (event,) = events.drain()
    assert event["type"] == "session-created"
    assert event["user_id"] == "42" and event["session_id_hashes"] == [body["session_id_hash"]]
    assert ISO.match(event["at"])


def test_create_after_the_cap_was_lowered_ends_the_surplus_and_publishes_it(api, services, events, clock):
    """Restarted with a smaller cap, a user holding more gets 201; every session the creation ended
    is published in one session-invalidated with reason evicted, and the user holds the new cap."""
    sids = []
    for _ in range(30):
        sids.append(api.create("42")["session_id_hash"])
        clock.advance(1)
    services.worker.flush()
    events.drain(0.1)
    lowered = create_app(dataclasses.replace(services.settings, max_sessions_per_user=5), clock=clock)
    try:
        response = lowered.test_client().post("/session/create", json={"user_id": "42"}, headers=api.headers)
        assert response.status_code == 201, response.get_json()
        lowered.extensions["sso"].worker.flush()
        published = events.drain()
        assert [e["type"] for e in published] == ["session-invalidated", "session-created"]
        assert published[0]["session_id_hashes"] == sids[:26] and published[0]["reason"] == "evicted"
        status = api.post("/session/status", {"session_id_hashes": sids}).get_json()["sessions"]
        assert [sid for sid in sids if status[sid]] == sids[26:]
        listed = api.client.get("/session/list/42", headers=api.headers).get_json()
        assert len(listed["sessions"]) == 5
    finally:
        lowered.extensions["sso"].redis.close()


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "a" * 65}, "user_id"),
        ({"user_id": "bad id"}, "user_id"),
        ({"user_id": "x{y}"}, "user_id"),
        ({"user_id": 5}, "user_id"),
        ({"user_id": "1", "client_ip": "not-an-ip"}, "client_ip"),
        ({"user_id": "1", "user_agent": "u" * 513}, "user_agent"),
        ({"user_id": "1", "claims": {"a": {"nested": 1}}}, "claims"),
        ({"user_id": "1", "claims": {"big": "x" * 5000}}, "claims"),
        ({"user_id": "1", "claims": "nope"}, "claims"),
        ({"user_id": "1", "surprise": True}, "surprise"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(api, redis, prefix, body, field):
    """A schema violation is invalid_request naming the field, and nothing is written."""
    response = api.post("/session/create", body)
    assert response.status_code == 400
    payload = response.get_json()
    assert payload["error"] == "invalid_request"
    assert payload["error_description"].startswith(field)
    assert list(redis.scan_iter(match=f"{prefix}*")) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Service wrong-secret-wrong-secret"},
        {"Authorization": f"Bearer {SERVICE_SECRET}"},
        {"Authorization": "Service"},
        {"Authorization": "Basic dGVzdA=="},
    ],
)
def test_service_endpoints_require_the_secret(client, headers, redis, prefix):
    """Without a valid service secret every service endpoint answers 401 JSON."""
    for method, path in [
        ("post", "/session/create"),
        ("post", "/session/validate"),
        ("get", "/session/list/42"),
        ("post", "/session/invalidate"),
        ("post", "/session/invalidate-all"),
        ("post", "/session/status"),
    ]:
        response = getattr(client, method)(path, json={"user_id": "42"}, headers=headers)
        assert response.status_code == 401, path
        assert response.get_json()["error"] == "invalid_client"
        assert response.headers["WWW-Authenticate"].startswith("Service")
    # nothing is written but the failure counter of the rate limit
    assert {k for k in redis.scan_iter(match=f"{prefix}*") if not k.startswith(f"{prefix}rl:service_auth:")} == set()


def test_any_configured_secret_works_for_rotation(client):
    """Every comma-separated secret is accepted, so secrets rotate without downtime."""
    response = client.post(
        "/session/create", json={"user_id": "7"}, headers={"Authorization": f"Service {OTHER_SECRET}"}
    )
    assert response.status_code == 201


def test_validate_known_and_unknown(api, services):
    """A live session validates with its record; an unknown hash is valid: false."""
    body = api.create("42", claims={"name": "Ada"})
    response = api.post("/session/validate", {"token_hash": body["session_id_hash"]})
    assert response.status_code == 200
    payload = response.get_json()
    assert payload["valid"] is True
    session = payload["session"]
    assert session["session_id_hash"] == body["session_id_hash"] and session["user_id"] == "42"
    assert session["claims"] == {"name": "Ada"}
    assert {"created_at", "last_active_at", "expires_at", "client_ip", "user_agent", "platform"} <= set(session)
    unknown = api.post("/session/validate", {"token_hash": token_hash("nope")})
    assert unknown.status_code == 200 and unknown.get_json() == {"valid": False}


def test_validate_rejects_malformed_hash(api):
    """A token_hash that cannot be a SHA-256 base64url hash is invalid_request."""
    response = api.post("/session/validate", {"token_hash": "short"})
    assert response.status_code == 400
    assert response.get_json()["error_description"].startswith("token_hash")


def test_expired_session_is_invalid_and_unlisted(api, clock, services):
    """Past its expiry a session neither validates nor lists."""
    body = api.create("42")
    clock.advance(services.settings.session_ttl + 1)
    assert api.post("/session/validate", {"token_hash": body["session_id_hash"]}).get_json() == {"valid": False}
    listed = api.client.get("/session/list/42", headers=api.headers).get_json()
    assert listed == {"sessions": []}


def test_activity_is_debounced_to_one_write_per_interval(api, clock, services, redis, keys):
    """Validation marks activity, but the worker writes at most once per interval."""
    body = api.create("42")
    key = keys.session(body["session_id_hash"])
    created = int(redis.hget(key, "last_active_at"))
    clock.advance(10)
    api.post("/session/validate", {"token_hash": body["session_id_hash"]})
    services.worker.run_once()
    assert int(redis.hget(key, "last_active_at")) == created  # inside the interval: no write
    clock.advance(services.settings.activity_update_interval)
    for _ in range(5):
        api.post("/session/validate", {"token_hash": body["session_id_hash"]})
    assert int(redis.hget(key, "last_active_at")) == created  # not on the request path
    services.worker.run_once()
    assert int(redis.hget(key, "last_active_at")) == int(clock.now)
    assert services.worker.writes == 1
    clock.advance(1)
    api.post("/session/validate", {"token_hash": body["session_id_hash"]})
    services.worker.run_once()
    assert services.worker.writes == 1


def test_activity_write_never_resurrects_an_invalidated_session(api, clock, services, redis, prefix):
    """A pending activity mark for a session ended meanwhile writes nothing."""
    body = api.create("42")
    clock.advance(services.settings.activity_update_interval + 1)
    api.post("/session/validate", {"token_hash": body["session_id_hash"]})
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [body["session_id_hash"]]})
    services.worker.run_once()
    assert {key for key in live_keys(redis, prefix) if not key.startswith(f"{prefix}event-log:r:")} <= {
        f"{prefix}event-log"
    }  # only the event log stays (and its append marks, 60 s)


def test_list_is_most_recently_active_first(api, clock, services):
    """Listing sorts by last activity, newest first."""
    first = api.create("42")
    clock.advance(5)
    second = api.create("42")
    api.create("other")
    clock.advance(services.settings.activity_update_interval + 1)
    api.post("/session/validate", {"token_hash": first["session_id_hash"]})
    services.worker.run_once()
    response = api.client.get("/session/list/42", headers=api.headers)
    assert response.status_code == 200
    hashes = [s["session_id_hash"] for s in response.get_json()["sessions"]]
    assert hashes == [first["session_id_hash"], second["session_id_hash"]]


def test_list_rejects_bad_user_id(api):
    response = api.client.get("/session/list/bad%20id", headers=api.headers)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_invalidate_reports_only_existing_and_cleans_up(api, redis, keys, events, services):
    """Only hashes that existed are reported; nothing of them is left in Redis."""
    a = api.create("42")
    b = api.create("42")
    stranger = api.create("99")
    services.worker.run_once()
    events.drain()
    response = api.post(
        "/session/invalidate",
        {
            "user_id": "42",
            "session_id_hashes": [a["session_id_hash"], token_hash("ghost"), stranger["session_id_hash"]],
        },
    )
    assert response.status_code == 200
    assert response.get_json() == {"invalidated": [a["session_id_hash"]]}
    assert not redis.exists(keys.session(a["session_id_hash"]))
    assert redis.zrange(keys.index("42"), 0, -1) == [b["session_id_hash"]]
    # another user's session named with the wrong user id survives, pointer included
    assert api.post("/session/validate", {"token_hash": stranger["session_id_hash"]}).get_json()["valid"] is True
    services.worker.run_once()
    (event,) = events.drain()
    assert event["type"] == "session-invalidated" and event["session_id_hashes"] == [a["session_id_hash"]]


def test_invalidate_nothing_publishes_nothing(api, events, services):
    """Ending sessions that do not exist is a no-op with no event."""
    response = api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [token_hash("x")]})
    assert response.get_json() == {"invalidated": []}
    services.worker.run_once()
    assert events.drain(timeout=0.2) == []


def test_invalidate_all_keeps_exceptions_and_publishes_global_logout(api, redis, prefix, events, services):
    """invalidate-all ends every session but the excepted ones."""
    a, b, c = api.create("42"), api.create("42"), api.create("42")
    services.worker.run_once()
    events.drain()
    response = api.post(
        "/session/invalidate-all", {"user_id": "42", "except_session_id_hashes": [c["session_id_hash"]]}
    )
    assert response.status_code == 200
    assert sorted(response.get_json()["invalidated"]) == sorted([a["session_id_hash"], b["session_id_hash"]])
    listed = api.client.get("/session/list/42", headers=api.headers).get_json()["sessions"]
    assert [s["session_id_hash"] for s in listed] == [c["session_id_hash"]]
    services.worker.run_once()
    (event,) = events.drain()
    assert event["type"] == "global-logout" and sorted(event["session_id_hashes"]) == sorted(
        [a["session_id_hash"], b["session_id_hash"]]
    )
    response = api.post("/session/invalidate-all", {"user_id": "42"})
    assert response.get_json() == {"invalidated": [c["session_id_hash"]]}
    assert {key for key in live_keys(redis, prefix) if not key.startswith(f"{prefix}event-log:r:")} <= {
        f"{prefix}event-log"
    }  # only the event log stays (and its append marks, 60 s)


def test_invalidate_validates_input(api):
    response = api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": "abc"})
    assert response.status_code == 400
    assert response.get_json()["error_description"].startswith("session_id_hashes")
    response = api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": ["bad"]})
    assert response.status_code == 400
    assert response.get_json()["error_description"].startswith("session_id_hashes")
