"""What an operator watches: the /metrics series beyond request counts, and the audit and limit log lines."""

from __future__ import annotations

import json

import requests

from sso.metrics import LIVE_SESSIONS_CACHE_SECONDS, ScrapeTimeCollector
from tests.conftest import SERVICE_SECRET, Clock
from tests.server import GunicornServer, LiveFlow, server_env
from tests.test_operations import log_lines, metric_value  # noqa: F401 - log_lines is a fixture
from tests.waiting import wait_for

HEADERS = {"Authorization": f"Service {SERVICE_SECRET}"}


def _scrape(url: str) -> str:
    response = requests.get(f"{url}/metrics", headers=HEADERS, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def test_gunicorn_metrics_show_sessions_build_redis_latency_and_events(settings, redis):
    """Across two workers: live sessions, the signing kid, Redis round trips, queue depth and publish lag."""
    server = GunicornServer(server_env(settings), workers=2)
    server.start()
    try:
        flow = LiveFlow(server.url, SERVICE_SECRET)
        for n in range(3):
            flow.login(f"u{n}")
        kid = requests.get(f"{server.url}/.well-known/jwks.json", timeout=5).json()["keys"][0]["kid"]
        wait_for(lambda: metric_value(_scrape(server.url), "sso_events_published_total") >= 3,
                 timeout=10, what="the workers to publish the session-created events")  # fmt: skip
        text = _scrape(server.url)
    finally:
        server.stop()
    assert metric_value(text, "sso_sessions_live") == 3
    assert metric_value(text, "sso_sessions_live_complete") == 1
    assert f'kid="{kid}"' in next(line for line in text.splitlines() if line.startswith("sso_build_info{"))
    assert metric_value(text, "sso_redis_command_duration_seconds_count", command="EVALSHA") >= 3
    assert metric_value(text, "sso_event_publish_lag_seconds_count") >= 1
    assert "sso_events_queued " in text and metric_value(text, "sso_events_queued") == 0


def test_rate_limit_blocks_are_counted_and_logged_once_when_they_start(settings, redis):
    """Past SSO_RATE_LIMIT_TOKEN_FAILURES: 429s counted by limit, one log line when the address is first blocked."""
    server = GunicornServer(server_env(settings, SSO_RATE_LIMIT_TOKEN_FAILURES="3/minute"), workers=2)
    server.start()
    try:
        statuses = [
            requests.post(f"{server.url}/token", timeout=5, data={"grant_type": "authorization_code",
                          "code": "never-issued", "client_id": "fluxer"}).status_code
            for _ in range(8)
        ]  # fmt: skip
        text = _scrape(server.url)
    finally:
        server.stop()
    assert statuses[:2] == [400, 400] and 429 in statuses
    assert metric_value(text, "sso_rate_limited_total", limit="token") == statuses.count(429)
    reached = [json.loads(line) for line in server.log.splitlines() if '"rate limit reached"' in line]
    assert len(reached) == 1, server.log
    assert reached[0]["limit"] == "token" and reached[0]["address"] == "127.0.0.1"
    assert reached[0]["level"] == "warning" and reached[0]["blocked_seconds"] >= 1


def test_live_sessions_are_counted_at_most_once_per_cache_period(services, api):
    """The scrape-time count is cached, refreshed after LIVE_SESSIONS_CACHE_SECONDS, and follows invalidation."""
    clock = Clock(1000)
    collector = ScrapeTimeCollector(services.store.count_live_sessions, {"version": "t", "kid": "k"}, clock)

    def live() -> float:
        return next(m.samples[0].value for m in collector.collect() if m.name == "sso_sessions_live")

    a = api.create("42")
    api.create("43")
    assert live() == 2
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [a["session_id_hash"]]})
    assert live() == 2  # cached
    clock.advance(LIVE_SESSIONS_CACHE_SECONDS)
    assert live() == 1


def test_live_session_count_is_bounded_and_says_when_cut_short(services, api):
    """With fewer SCAN round trips than the keyspace needs, the count is a lower bound marked incomplete."""
    for n in range(5):
        api.create(f"user{n}")
    assert services.store.count_live_sessions() == (5, True)
    count, complete = services.store.count_live_sessions(max_round_trips=1, batch=1)
    assert count <= 5 and complete is False


def test_authorize_lines_carry_the_user_id(oauth, log_lines):  # noqa: F811
    """The access-log line of a successful /authorize names the cookie's user."""
    oauth.login("777")
    oauth.code()
    (line,) = [line for line in log_lines() if line["logger"] == "sso.access" and line["path"] == "/authorize"]
    assert line["status"] == 302 and line["user_id"] == "777"


def _audit(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line["logger"] == "sso.audit"]


def test_every_invalidation_writes_one_audit_line_naming_its_caller(app, api, oauth, client, log_lines):  # noqa: F811
    """Service API (its address), /logout and the CLI each leave one sso.audit line with what they ended."""
    a, b = api.create("42"), api.create("42")
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [a["session_id_hash"], "A" * 43]})
    app.test_cli_runner().invoke(args=["sso", "end-session", "42", b["session_id_hash"]])
    session = oauth.login("42")
    client.post("/logout", data={"invalidate": "all"}, headers={"Origin": "http://app.test"})
    api.post("/session/invalidate-all", {"user_id": "42"})
    lines = _audit(log_lines())
    assert [(line["event"], line["actor"], line["ended"]) for line in lines] == [
        ("session-invalidated", "service 127.0.0.1", 1),
        ("session-invalidated", "cli", 1),
        ("global-logout", "logout", 1),
        ("global-logout", "service 127.0.0.1", 0),
    ]
    assert lines[0]["session_id_hashes"] == [a["session_id_hash"]] and lines[0]["requested"] == 2
    assert lines[2]["session_id_hashes"] == [session["session_id_hash"]]
    assert all(line["user_id"] == "42" for line in lines)
    assert session["token"] not in json.dumps(lines)


def test_every_revocation_writes_one_audit_line(oauth, client, log_lines):  # noqa: F811
    """/revoke by a client and by a service: one line each, with the outcome, never the token."""
    oauth.login("42")
    tokens = oauth.tokens()
    client.post("/revoke", data={"token": tokens["refresh_token"], "client_id": "fluxer"})
    client.post("/revoke", data={"token": tokens["access_token"]}, headers=HEADERS)
    client.post("/revoke", data={"token": "never-issued", "client_id": "fluxer-admin"})
    lines = _audit(log_lines())
    assert [(line["actor"], line["token_type"], line["outcome"]) for line in lines] == [
        ("client fluxer", "refresh_token", "revoked"),
        ("service 127.0.0.1", "access_token", "revoked"),
        ("client fluxer-admin", "refresh_token", "unknown"),
    ]
    assert lines[1]["user_id"] == "42" and lines[1]["sid"]
    text = json.dumps(lines)
    assert tokens["refresh_token"] not in text and tokens["access_token"] not in text
