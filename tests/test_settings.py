"""Configuration loading: defaults, derivations, and one clear error per bad variable."""

from __future__ import annotations

from datetime import datetime

import pytest

from config.keygen import ensure_env_file, env_lines, generate_key_pair
from config.settings import ConfigError, RateLimit, load_settings

TEN_YEARS = 315360000
DURATIONS = {
    "SSO_ACCESS_TOKEN_TTL": "access_token_ttl",
    "SSO_REFRESH_TOKEN_TTL": "refresh_token_ttl",
    "SSO_SESSION_TTL": "session_ttl",
    "SSO_ACTIVITY_UPDATE_INTERVAL": "activity_update_interval",
    "SSO_REFRESH_REUSE_GRACE": "refresh_reuse_grace",
    "SSO_JWKS_MAX_AGE": "jwks_max_age",
    "SSO_EVENT_LOG_RETENTION": "event_log_retention",
}


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def env(key_pair):
    return {
        "SSO_JWT_PRIVATE_KEY": key_pair[0],
        "SSO_JWT_PUBLIC_KEY": key_pair[1],
        "SSO_SERVICE_SECRET": "s" * 32,
    }


def test_defaults_match_the_spec(env):
    """Only the three required variables set: every docs/contract.md default applies."""
    s = load_settings(env)
    assert (s.port, s.redis_url, s.issuer) == (8090, "redis://127.0.0.1:6379/0", "http://localhost:8090")
    assert (s.access_token_ttl, s.refresh_token_ttl, s.session_ttl) == (900, 2592000, 2592000)
    assert s.activity_update_interval == 300 and s.refresh_reuse_grace == 0
    assert s.app_origins == ("http://localhost:3000",)
    assert s.allowed_redirect_uris == ("http://localhost:3000/oauth/callback",)
    assert s.clients == ("fluxer",) and s.login_url == "http://localhost:3000/login"
    assert s.cookie_domain == "" and s.cookie_secure is True
    assert s.redis_prefix == "sso:" and s.access_token_audience == "fluxer-api"


def test_lists_and_derivations(env):
    s = load_settings(
        {
            **env,
            "SSO_SERVICE_SECRET": "old-secret-old-secret-old-secret-0, new-secret-new-secret-new-secret-1",
            "SSO_APP_ORIGINS": "https://app.fluxer.test, https://admin.fluxer.test/",
            "SSO_CLIENTS": "fluxer,fluxer-admin",
            "SSO_COOKIE_SECURE": "false",
            "SSO_ISSUER": "https://sso.fluxer.test/",
        }
    )
    assert s.service_secrets == ("old-secret-old-secret-old-secret-0", "new-secret-new-secret-new-secret-1")
    assert s.app_origins == ("https://app.fluxer.test", "https://admin.fluxer.test")
    assert s.allowed_redirect_uris == (
        "https://app.fluxer.test/oauth/callback",
        "https://admin.fluxer.test/oauth/callback",
    )
    assert s.login_url == "https://app.fluxer.test/login"
    assert s.clients == ("fluxer", "fluxer-admin") and s.cookie_secure is False
    assert s.issuer == "https://sso.fluxer.test"


def test_rate_limits(env):
    """Defaults per README; count/period in seconds, minutes, hours or days; off (or 0) disables."""
    s = load_settings(env)
    assert s.rate_limit_service_auth_failures == RateLimit(20, 60)
    assert s.rate_limit_token_failures == RateLimit(60, 60) == s.rate_limit_authorize_failures
    s = load_settings(
        {
            **env,
            "SSO_RATE_LIMIT_SERVICE_AUTH_FAILURES": "5/second",
            "SSO_RATE_LIMIT_TOKEN_FAILURES": "100 / 2 hours",
            "SSO_RATE_LIMIT_AUTHORIZE_FAILURES": "0/minute",
        }
    )
    assert s.rate_limit_service_auth_failures == RateLimit(5, 1)
    assert s.rate_limit_token_failures == RateLimit(100, 7200)
    assert s.rate_limit_authorize_failures is None
    assert load_settings({**env, "SSO_RATE_LIMIT_TOKEN_FAILURES": "off"}).rate_limit_token_failures is None


def test_the_removed_validate_limit_variable_is_ignored(env):
    """/session/validate is not limited any more (README, Rate limits): a leftover setting, even a bad one,
    does not stop the service."""
    s = load_settings({**env, "SSO_RATE_LIMIT_VALIDATE_FAILURES": "lots"})
    assert s.rate_limit_service_auth_failures == RateLimit(20, 60)


def test_escaped_newlines_in_pems_are_accepted(env):
    """PEMs on one line with literal \\n (as `make keys` writes them) load."""
    s = load_settings({**env, "SSO_JWT_PRIVATE_KEY": env["SSO_JWT_PRIVATE_KEY"].strip().replace("\n", "\\n")})
    assert s.jwt_private_key.startswith("-----BEGIN PRIVATE KEY-----\n")


@pytest.mark.parametrize(
    "change, variable",
    [
        ({"SSO_JWT_PRIVATE_KEY": ""}, "SSO_JWT_PRIVATE_KEY"),
        (
            {"SSO_JWT_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----"},
            "SSO_JWT_PRIVATE_KEY",
        ),
        ({"SSO_JWT_PUBLIC_KEY": "not a pem"}, "SSO_JWT_PUBLIC_KEY"),
        ({"SSO_SERVICE_SECRET": ""}, "SSO_SERVICE_SECRET"),
        ({"SSO_SERVICE_SECRET": "short"}, "SSO_SERVICE_SECRET"),
        ({"SSO_SERVICE_SECRET": "s" * 31}, "SSO_SERVICE_SECRET"),
        ({"SSO_SERVICE_SECRET": f"{'a' * 32},{'b' * 31}"}, "SSO_SERVICE_SECRET"),
        ({"SSO_ACCESS_TOKEN_TTL": "ten"}, "SSO_ACCESS_TOKEN_TTL"),
        ({"SSO_SESSION_TTL": "-5"}, "SSO_SESSION_TTL"),
        ({"SSO_REFRESH_TOKEN_TTL": "0"}, "SSO_REFRESH_TOKEN_TTL"),
        ({"SSO_ACTIVITY_UPDATE_INTERVAL": "1.5"}, "SSO_ACTIVITY_UPDATE_INTERVAL"),
        ({"SSO_REFRESH_REUSE_GRACE": "x"}, "SSO_REFRESH_REUSE_GRACE"),
        ({"SSO_PORT": "70000"}, "SSO_PORT"),
        ({"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL"),
        ({"SSO_ISSUER": "not a url"}, "SSO_ISSUER"),
        ({"SSO_ISSUER": "https://sso.test/?a=b"}, "SSO_ISSUER"),
        ({"SSO_APP_ORIGINS": "https://app.test/path"}, "SSO_APP_ORIGINS"),
        ({"SSO_ALLOWED_REDIRECT_URIS": "javascript:alert(1)"}, "SSO_ALLOWED_REDIRECT_URIS"),
        ({"SSO_ALLOWED_REDIRECT_URIS": "https://a@evil.test/cb"}, "SSO_ALLOWED_REDIRECT_URIS"),
        ({"SSO_CLIENTS": "bad client"}, "SSO_CLIENTS"),
        ({"SSO_COOKIE_SECURE": "maybe"}, "SSO_COOKIE_SECURE"),
        ({"SSO_COOKIE_DOMAIN": "bad domain;"}, "SSO_COOKIE_DOMAIN"),
        ({"SSO_REDIS_PREFIX": "sso {x}"}, "SSO_REDIS_PREFIX"),
        ({"SSO_LOGIN_URL": "ftp://x"}, "SSO_LOGIN_URL"),
        # a port urlsplit cannot read: refused here, not by a traceback in the first worker to use it
        ({"SSO_ISSUER": "http://localhost:80a"}, "SSO_ISSUER"),
        ({"SSO_ISSUER": "http://127.0.0.1:99999"}, "SSO_ISSUER"),
        ({"SSO_ISSUER": "https://sso.test:0"}, "SSO_ISSUER"),
        ({"SSO_APP_ORIGINS": "https://app.test, http://app:abc"}, "SSO_APP_ORIGINS"),
        ({"SSO_ALLOWED_REDIRECT_URIS": "http://app:-1/cb"}, "SSO_ALLOWED_REDIRECT_URIS"),
        ({"SSO_LOGIN_URL": "http://app: 80/login"}, "SSO_LOGIN_URL"),
        ({"SSO_BACKCHANNEL_LOGOUT_URIS": "fluxer=https://rp:65536/bc"}, "SSO_BACKCHANNEL_LOGOUT_URIS"),
        ({"SSO_RATE_LIMIT_SERVICE_AUTH_FAILURES": "lots"}, "SSO_RATE_LIMIT_SERVICE_AUTH_FAILURES"),
        ({"SSO_RATE_LIMIT_TOKEN_FAILURES": "10/fortnight"}, "SSO_RATE_LIMIT_TOKEN_FAILURES"),
        ({"SSO_RATE_LIMIT_AUTHORIZE_FAILURES": "5/0minutes"}, "SSO_RATE_LIMIT_AUTHORIZE_FAILURES"),
    ],
)
def test_bad_variables_name_themselves(env, change, variable):
    """Each invalid variable raises ConfigError naming it and no secret value."""
    with pytest.raises(ConfigError) as info:
        load_settings({**env, **change})
    assert info.value.variable == variable
    assert str(info.value).startswith(f"{variable}: ")
    assert env["SSO_SERVICE_SECRET"] not in str(info.value) and "PRIVATE KEY" not in str(info.value)


def test_a_url_with_a_bad_port_says_so(env):
    """The line names the port as the problem; a URL with a good port or none is taken as it is."""
    with pytest.raises(ConfigError) as info:
        load_settings({**env, "SSO_ISSUER": "http://localhost:80a"})
    assert str(info.value) == "SSO_ISSUER: 'http://localhost:80a' has an invalid port (1-65535)"
    s = load_settings({**env, "SSO_ISSUER": "https://sso.test:8443", "SSO_APP_ORIGINS": "http://[::1]:3000"})
    assert (s.issuer, s.app_origins, s.login_url) == (
        "https://sso.test:8443",
        ("http://[::1]:3000",),
        "http://[::1]:3000/login",
    )


@pytest.mark.parametrize("variable", DURATIONS)
def test_every_duration_has_a_ceiling_of_ten_years(env, variable):
    """Ten years is taken; one second more stops the start (10**12 once made every /session/create a 500)."""
    assert getattr(load_settings({**env, variable: str(TEN_YEARS)}), DURATIONS[variable]) == TEN_YEARS
    for value in (TEN_YEARS + 1, 10**12):
        with pytest.raises(ConfigError) as info:
            load_settings({**env, variable: str(value)})
        assert str(info.value) == f"{variable}: must be at most {TEN_YEARS} (10 years), got {value}"


def test_a_rate_limit_window_has_the_same_ceiling(env):
    """A window is a TTL of its counters too: ten years (3650 days) is taken, a day more is not."""
    name = "SSO_RATE_LIMIT_TOKEN_FAILURES"
    assert load_settings({**env, name: "5/3650days"}).rate_limit_token_failures == RateLimit(5, TEN_YEARS)
    with pytest.raises(ConfigError) as info:
        load_settings({**env, name: "5/3651days"})
    assert str(info.value) == f"{name}: the period must be at most {TEN_YEARS} seconds (10 years), got '5/3651days'"


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            **{field: TEN_YEARS for field in DURATIONS.values()},
            "rate_limit_token_failures": RateLimit(5, TEN_YEARS),
            "rate_limit_service_auth_failures": RateLimit(5, TEN_YEARS),
        }
    ],
)
def test_the_service_works_with_every_duration_at_its_ceiling(
    api, oauth, client, clock, redis, prefix, keys, services, settings_overrides
):
    """At the ceilings every timestamp, JWT exp, cookie and Redis EXPIRE stays valid: no 500, no 503."""
    session = oauth.login()
    assert max(redis.ttl(key) for key in redis.scan_iter(match=f"{prefix}*")) > TEN_YEARS - 60
    validated = api.post("/session/validate", {"token_hash": session["session_id_hash"]}).get_json()
    assert validated["valid"] is True and iso_seconds(validated["session"]["expires_at"]) == clock.now + TEN_YEARS
    tokens = oauth.tokens()
    refreshed = oauth.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.get_json()
    assert refreshed.get_json()["expires_in"] > TEN_YEARS - 60
    introspected = client.post("/introspect", data={"token": refreshed.get_json()["access_token"]}, headers=api.headers)
    assert introspected.status_code == 200 and introspected.get_json()["active"] is True
    cookie = client.post("/session/set-cookie", json={"token": session["token"]}, headers={"Origin": "http://app.test"})
    assert cookie.status_code == 204 and f"Max-Age={TEN_YEARS}" in cookie.headers["Set-Cookie"]
    # failures are counted under a ten-year window: refused as they should be, not 503
    wrong = {"Authorization": "Service " + "x" * 40}
    assert client.post("/session/create", json={"user_id": "1"}, headers=wrong).status_code == 401
    assert oauth.exchange("not-a-code").status_code == 400
    assert client.get("/.well-known/jwks.json").headers["Cache-Control"] == f"public, max-age={TEN_YEARS}"
    assert services.worker.flush() >= 1 and redis.xlen(keys.event_log) >= 1  # appended, trimmed by a ten-year MINID


def test_mismatched_keys_are_refused(env):
    """A public key that is not the private key's is named as the culprit."""
    _, other_public = generate_key_pair()
    with pytest.raises(ConfigError) as info:
        load_settings({**env, "SSO_JWT_PUBLIC_KEY": other_public})
    assert info.value.variable == "SSO_JWT_PUBLIC_KEY" and "does not match" in info.value.problem


def test_keygen_lines_load_as_settings(tmp_path):
    """`make keys` output, read back through python-dotenv, is a valid configuration."""
    from dotenv import dotenv_values

    path = tmp_path / "keys.env"
    path.write_text(env_lines())
    values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    s = load_settings(values)
    assert len(s.service_secrets[0]) >= 40


def test_ensure_env_file_never_overwrites(tmp_path):
    path = tmp_path / ".env"
    assert ensure_env_file(path) is True
    first = path.read_text()
    assert "SSO_JWT_PRIVATE_KEY" in first and oct(path.stat().st_mode & 0o777) == "0o600"
    assert ensure_env_file(path) is False
    assert path.read_text() == first


@pytest.mark.parametrize(
    "url", ["redis://:\t\t\tHunter2Secret@h:6379/0", "redis://:\n\nHunter2Secret@redis.internal/0"]
)
def test_a_redis_url_with_control_characters_is_refused_without_its_password(env, url):
    """urlsplit drops tabs and newlines, so the logged (masked) URL and the one redis-py used would differ."""
    with pytest.raises(ConfigError) as info:
        load_settings({**env, "REDIS_URL": url})
    assert str(info.value).startswith("REDIS_URL: must not contain control characters")
    assert "Secret" not in str(info.value) and "cret" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SSO_BACKCHANNEL_LOGOUT_URIS", "fluxer=https://svc:Hunter2Secret@bc.example:0/logout"),
        ("SSO_BACKCHANNEL_LOGOUT_URIS", "fluxer=https://bc.example:0/logout?key=Hunter2Secret"),
        ("SSO_BACKCHANNEL_LOGOUT_URIS", "nobody=https://bc.example/logout?key=Hunter2Secret"),
        ("SSO_BACKCHANNEL_LOGOUT_URIS", "fluxer=http://bc.example/logout?key=Hunter2Secret"),
        ("SSO_LOGIN_URL", "https://app.example:70000/login?token=Hunter2Secret"),
        ("SSO_LOGIN_URL", "ftp://u:Hunter2Secret@app.example/login"),
    ],
)
def test_a_bad_url_setting_is_named_without_its_credentials(env, name, value):
    with pytest.raises(ConfigError) as info:
        load_settings({**env, name: value})
    assert str(info.value).startswith(f"{name}: ") and "Hunter2" not in str(info.value)
