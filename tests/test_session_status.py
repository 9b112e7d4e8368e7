"""POST /session/status: which sessions are live, for API instances resynchronising after missed events."""

from __future__ import annotations

import pytest

from config.settings import RateLimit
from sso.digests import token_hash

pytestmark = pytest.mark.topologies

UNKNOWN = token_hash("never-a-session")


def status(api, hashes):
    return api.post("/session/status", {"session_id_hashes": hashes})


def test_live_ended_expired_and_unknown(api, clock):
    """Live sessions are true; invalidated, expired and never-created ones false; order and repeats do not matter."""
    live, ended, other_user = api.create("42"), api.create("42"), api.create("7")
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [ended["session_id_hash"]]})
    hashes = [live["session_id_hash"], ended["session_id_hash"], UNKNOWN, other_user["session_id_hash"]]
    response = status(api, [*hashes, live["session_id_hash"]])
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {
        "sessions": {
            live["session_id_hash"]: True,
            ended["session_id_hash"]: False,
            UNKNOWN: False,
            other_user["session_id_hash"]: True,
        }
    }
    clock.advance(api.client.application.extensions["sso"].settings.session_ttl)
    assert status(api, hashes).get_json()["sessions"] == dict.fromkeys(hashes, False)  # expired at the clock


def test_a_hundred_hashes_in_one_request(api):
    live = api.create("42")["session_id_hash"]
    hashes = [live] + [token_hash(f"unknown-{n}") for n in range(99)]
    answer = status(api, hashes).get_json()["sessions"]
    assert len(answer) == 100 and answer[live] is True and sum(answer.values()) == 1


def test_records_no_activity(api, clock, services, redis, prefix):
    """Asking about a session is not a use of it: nothing is queued, last_active_at stays."""
    body = api.create("42")
    key = f"{prefix}{{42}}:session:{body['session_id_hash']}"
    services.worker.run_once()  # publishes session-created: the queue is empty
    before = redis.hget(key, "last_active_at")
    clock.advance(services.settings.activity_update_interval * 3)
    assert status(api, [body["session_id_hash"]]).get_json()["sessions"][body["session_id_hash"]] is True
    assert services.worker.pending == 0
    services.worker.run_once()
    assert redis.hget(key, "last_active_at") == before


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_service_auth_failures": RateLimit(2, 60)}])
def test_counts_toward_no_rate_limit(api, redis, prefix):
    """Many `false` answers neither write a rate-limit counter nor block validation or status."""
    live = api.create("42")
    for _ in range(5):
        assert status(api, [UNKNOWN]).status_code == 200
    assert list(redis.scan_iter(match=f"{prefix}rl:*")) == []
    assert api.post("/session/validate", {"token_hash": live["session_id_hash"]}).get_json()["valid"] is True
    assert status(api, [live["session_id_hash"]]).status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"session_id_hashes": []}, "session_id_hashes"),
        ({"session_id_hashes": [token_hash(str(n)) for n in range(101)]}, "session_id_hashes"),
        ({"session_id_hashes": ["short"]}, "session_id_hashes.0"),
        ({"session_id_hashes": [UNKNOWN, UNKNOWN + "\n"]}, "session_id_hashes.1"),
        ({"session_id_hashes": [42]}, "session_id_hashes.0"),
        ({"session_id_hashes": UNKNOWN}, "session_id_hashes"),
        ({}, "session_id_hashes"),
        ({"session_id_hashes": [UNKNOWN], "user_id": "42"}, "user_id"),
        ([UNKNOWN], "body"),
    ],
    ids=["empty", "101", "malformed", "newline", "number", "not-a-list", "missing", "unknown-field", "array-body"],
)
def test_bad_input_is_json_400_naming_the_field(api, body, field):
    response = api.post("/session/status", body)
    assert response.status_code == 400
    error = response.get_json()
    assert error["error"] == "invalid_request" and error["error_description"].startswith(f"{field}:"), error


def test_needs_json(api):
    response = api.client.post("/session/status", data="session_id_hashes=x", headers=api.headers)
    assert response.status_code == 415 and response.get_json()["error"] == "invalid_request"
