"""Failure rate limits per client address (sso/ratelimit.py): failures answer 429, valid credentials never do."""

from __future__ import annotations

import pytest

from app import create_app
from config.settings import RateLimit
from sso.cookies import COOKIE_NAME
from sso.digests import token_hash
from sso.ratelimit import address_key
from tests.conftest import SERVICE_SECRET

LIMIT = RateLimit(3, 60)
ATTACKER = {"REMOTE_ADDR": "203.0.113.66"}
NEIGHBOUR = {"REMOTE_ADDR": "203.0.113.67"}
WRONG = {"Authorization": "Service wrong-secret-wrong-secret"}
RIGHT = {"Authorization": f"Service {SERVICE_SECRET}"}


@pytest.fixture
def settings_overrides() -> dict:
    """Every limit at 3 failures a minute, so tests reach them quickly."""
    return {
        "rate_limit_service_auth_failures": LIMIT,
        "rate_limit_token_failures": LIMIT,
        "rate_limit_authorize_failures": LIMIT,
    }


def assert_rate_limited(response, window: int = LIMIT.seconds) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "rate_limited" and response.get_json()["error_description"]
    assert 1 <= int(response.headers["Retry-After"]) <= window
    assert "Location" not in response.headers


def create(client, environ=ATTACKER, headers=RIGHT):
    return client.post("/session/create", json={"user_id": "42"}, headers=headers, environ_base=environ)


def test_service_auth_failures_answer_429_but_the_right_secret_is_always_served(client):
    """Three wrong secrets answer 401, then 429; the right secret from that very address is still served."""
    for _ in range(LIMIT.count):
        assert create(client, headers=WRONG).status_code == 401
    assert_rate_limited(create(client, headers=WRONG))
    assert create(client).status_code == 201  # a valid credential is never refused for others' failures
    assert client.post("/introspect", data={"token": "x"}, headers=RIGHT, environ_base=ATTACKER).status_code == 200
    assert_rate_limited(create(client, headers={"Authorization": "Bearer x"}))  # no secret is a failure too
    assert create(client, environ=NEIGHBOUR, headers=WRONG).status_code == 401  # per address


def test_a_blocked_address_fails_from_memory_without_redis(client, services, monkeypatch):
    """Once this worker knows the block, the address's failures cost no Redis round trip (the load shed)."""
    for _ in range(LIMIT.count):
        create(client, headers=WRONG)

    def boom(*_args, **_kwargs):
        raise AssertionError("a known block went to Redis")

    monkeypatch.setattr(services.store, "count_failure", boom)
    for _ in range(5):
        assert_rate_limited(create(client, headers=WRONG))
    assert create(client).status_code == 201


def test_reaching_a_limit_is_flagged_once_in_the_log_and_metrics(client, caplog):
    """The failure that reaches the limit logs one warning naming the limit and address; each 429 is counted."""
    from prometheus_client import REGISTRY

    def refused() -> float:
        return REGISTRY.get_sample_value("sso_rate_limited_total", {"limit": "service_auth"}) or 0.0

    before = refused()
    with caplog.at_level("WARNING", logger="sso.ratelimit"):
        for _ in range(LIMIT.count + 3):
            create(client, headers=WRONG)
    flagged = [r for r in caplog.records if r.name == "sso.ratelimit"]
    assert len(flagged) == 1 and flagged[0].getMessage() == "rate limit reached"
    assert (flagged[0].limit, flagged[0].address) == ("service_auth", "203.0.113.66")  # type: ignore[attr-defined]
    assert SERVICE_SECRET not in flagged[0].getMessage()
    assert refused() - before == 3


def test_service_auth_limit_resets_with_the_window(client, clock):
    """When the window ends the address starts afresh."""
    for _ in range(LIMIT.count + 1):
        create(client, headers=WRONG)
    assert_rate_limited(create(client, headers=WRONG))
    clock.advance(LIMIT.seconds)
    assert create(client, headers=WRONG).status_code == 401


def test_limit_is_shared_across_two_app_instances(settings, clock, redis):
    """Two instances on one Redis share the count and agree: failures are 429 on both, the secret works on both."""
    first = create_app(settings, clock=clock).test_client()
    second = create_app(settings, clock=clock).test_client()
    try:
        for _ in range(LIMIT.count):
            assert create(first, headers=WRONG).status_code == 401
        for instance in (second, first, second):
            assert_rate_limited(create(instance, headers=WRONG))
            assert create(instance).status_code == 201
        assert create(second, environ=NEIGHBOUR, headers=WRONG).status_code == 401
    finally:
        for c in (first, second):
            c.application.extensions["sso"].redis.close()


def test_revoke_with_a_wrong_service_secret_counts(client):
    """/revoke's service branch is the same service authentication, limited the same way."""
    for _ in range(LIMIT.count):
        response = client.post("/revoke", data={"token": "x"}, headers=WRONG, environ_base=ATTACKER)
        assert response.status_code == 401
    assert_rate_limited(client.post("/revoke", data={"token": "x"}, headers=WRONG, environ_base=ATTACKER))
    assert client.post("/revoke", data={"token": "x"}, headers=RIGHT, environ_base=ATTACKER).status_code == 200


def test_other_authorization_schemes_at_revoke_are_not_service_logins(client):
    """A client library's Basic (or Bearer) header at /revoke is not a failed service login: the client_id decides."""
    basic = {"Authorization": "Basic Zmx1eGVyOg=="}  # "fluxer:"
    for _ in range(LIMIT.count * 2):
        response = client.post(
            "/revoke", data={"token": "x", "client_id": "fluxer"}, headers=basic, environ_base=ATTACKER
        )
        assert response.status_code == 200
    assert create(client, headers=WRONG).status_code == 401  # the address's budget is untouched
    response = client.post("/revoke", data={"token": "x"}, headers=basic, environ_base=ATTACKER)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


BAD_CODE = {"grant_type": "authorization_code", "code": "guess", "client_id": "fluxer",
            "redirect_uri": "http://app.test/oauth/callback", "code_verifier": "v" * 43}  # fmt: skip


def test_token_failures_answer_429_but_a_valid_code_and_refresh_token_succeed(oauth, client):
    """Failed grants count and then answer 429; a valid code or refresh token from that address still succeeds."""
    for _ in range(LIMIT.count):
        assert client.post("/token", data=BAD_CODE, environ_base=ATTACKER).get_json()["error"] == "invalid_grant"
    assert_rate_limited(client.post("/token", data=BAD_CODE, environ_base=ATTACKER))
    oauth.login()
    form = {**BAD_CODE, "code": oauth.code(), "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"}
    issued = client.post("/token", data=form, environ_base=ATTACKER)
    assert issued.status_code == 200, issued.get_json()
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": issued.get_json()["refresh_token"],
        "client_id": "fluxer",
    }
    assert client.post("/token", data=refresh, environ_base=ATTACKER).status_code == 200
    assert_rate_limited(client.post("/token", data=refresh, environ_base=ATTACKER))  # now spent: a failure


def test_token_limit_resets(client, clock):
    for _ in range(LIMIT.count + 1):
        client.post("/token", data={"grant_type": "password", "client_id": "fluxer"}, environ_base=ATTACKER)
    assert_rate_limited(client.post("/token", data={"client_id": "fluxer"}, environ_base=ATTACKER))
    clock.advance(LIMIT.seconds)
    response = client.post("/token", data={"grant_type": "password", "client_id": "fluxer"}, environ_base=ATTACKER)
    assert response.get_json()["error"] == "unsupported_grant_type"


def test_authorize_failures_trigger_429_never_a_redirect(oauth, client):
    """Unknown clients, redirected errors and dead cookies count; the refusal is JSON, never a redirect."""
    params = oauth.authorize_params()
    assert (
        client.get("/authorize", query_string={**params, "client_id": "evil"}, environ_base=ATTACKER).status_code == 400
    )
    redirected = client.get("/authorize", query_string={**params, "scope": "admin"}, environ_base=ATTACKER)
    assert "error=invalid_scope" in redirected.headers["Location"]
    client.set_cookie(COOKIE_NAME, "a-guessed-session-token", domain="localhost")
    assert client.get("/authorize", query_string=params, environ_base=ATTACKER).status_code == 302  # to login
    assert_rate_limited(client.get("/authorize", query_string=params, environ_base=ATTACKER))


def test_a_refused_redirected_failure_is_counted_once(oauth, client):
    """Past the limit, each refused /authorize failure adds one failure and one refusal, not two."""
    from prometheus_client import REGISTRY

    def refused() -> float:
        return REGISTRY.get_sample_value("sso_rate_limited_total", {"limit": "authorize"}) or 0.0

    params = {**oauth.authorize_params(), "scope": "admin"}  # an invalid_scope redirected to the client
    for _ in range(LIMIT.count):
        assert "error=invalid_scope" in client.get("/authorize", query_string=params, environ_base=ATTACKER).location
    before = refused()
    assert_rate_limited(client.get("/authorize", query_string=params, environ_base=ATTACKER))
    assert refused() == before + 1
    assert_rate_limited(client.get("/authorize", query_string=params, environ_base=ATTACKER))  # from memory
    assert refused() == before + 2


def test_a_valid_sso_cookie_is_served_from_a_blocked_address(oauth, client):
    """Past the /authorize limit, a browser with a live session still gets its code, and one without goes to login."""
    for _ in range(LIMIT.count + 1):
        client.get("/authorize", query_string={**oauth.authorize_params(), "client_id": "evil"}, environ_base=ATTACKER)
    assert_rate_limited(
        client.get("/authorize", query_string={**oauth.authorize_params(), "client_id": "evil"}, environ_base=ATTACKER)
    )
    login = client.get("/authorize", query_string=oauth.authorize_params(), environ_base=ATTACKER)
    assert login.status_code == 302 and login.headers["Location"].startswith("http://app.test/login")
    oauth.login()
    granted = client.get("/authorize", query_string=oauth.authorize_params(), environ_base=ATTACKER)
    assert granted.status_code == 302 and "code=" in granted.headers["Location"]


def test_authorize_without_a_cookie_is_not_a_failure(oauth, client):
    """A browser sent to the login page (no cookie) or given a code is not failing."""
    for _ in range(LIMIT.count * 2):
        assert client.get("/authorize", query_string=oauth.authorize_params(), environ_base=ATTACKER).status_code == 302
    oauth.login()
    for _ in range(LIMIT.count * 2):
        assert "code=" in oauth.client.get("/authorize", query_string=oauth.authorize_params()).headers["Location"]


def test_unknown_session_hashes_never_lock_an_api_instance_out_of_validate(api, client, redis, prefix):
    """valid:false is an honest answer (anonymous visitors' tokens pass through an API instance): not limited."""
    live = api.create("42")
    for i in range(LIMIT.count * 3):
        response = client.post(
            "/session/validate", json={"token_hash": token_hash(f"guess-{i}")}, headers=RIGHT, environ_base=ATTACKER
        )
        assert response.get_json() == {"valid": False}
    response = client.post(
        "/session/validate", json={"token_hash": live["session_id_hash"]}, headers=RIGHT, environ_base=ATTACKER
    )
    assert response.status_code == 200 and response.get_json()["valid"] is True
    assert list(redis.scan_iter(match=f"{prefix}rl:*")) == []


def test_malformed_validate_input_is_not_a_failure(client):
    """400s from an authenticated caller are input errors, not guesses."""
    for _ in range(LIMIT.count * 2):
        response = client.post("/session/validate", json={"token_hash": "x"}, headers=RIGHT, environ_base=ATTACKER)
        assert response.status_code == 400


def test_successful_requests_never_touch_the_limiter_in_redis(oauth, api, services, monkeypatch):
    """The success path reads only in-process memory: no Redis round trip is added."""

    def boom(*_args, **_kwargs):
        raise AssertionError("a successful request counted a failure")

    monkeypatch.setattr(services.store, "count_failure", boom)
    session = oauth.login()
    body = oauth.tokens()
    assert oauth.refresh(body["refresh_token"]).status_code == 200
    assert api.post("/session/validate", {"token_hash": session["session_id_hash"]}).get_json()["valid"] is True
    assert api.client.post("/introspect", data={"token": body["access_token"]}, headers=RIGHT).status_code == 200


def test_counters_live_under_the_prefix_with_a_ttl(client, redis, prefix):
    """The counter is one key per limit, window and address, under SSO_REDIS_PREFIX, expiring with its window."""
    create(client, headers=WRONG)
    (key,) = redis.scan_iter(match=f"{prefix}rl:*")
    assert key.startswith(f"{prefix}rl:service_auth:") and key.endswith(":203.0.113.66")
    assert redis.get(key) == "1" and 0 < redis.ttl(key) <= LIMIT.seconds + 1


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_service_auth_failures": None}], ids=["off"])
def test_a_limit_can_be_switched_off(client, redis, prefix):
    for _ in range(10):
        assert create(client, headers=WRONG).status_code == 401
    assert list(redis.scan_iter(match=f"{prefix}rl:*")) == []


@pytest.mark.parametrize(
    "address, key",
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        (None, "other"),
        ("not-an-address", "other"),
    ],
)
def test_address_key_counts_ipv6_per_64(address, key):
    """One IPv6 subscriber holds a whole /64, so that is the unit counted."""
    assert address_key(address) == key
