"""Signing key rotation without a flag day: extra public keys, the JWKS, and `sso rotate-keys`."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from dotenv import dotenv_values
from flask import Flask

from app import create_app
from config.keygen import generate_key_pair
from config.settings import ConfigError, Settings, load_settings
from sso.cookies import COOKIE_NAME
from sso.keys import KeySet, TokenRejected
from tests.conftest import Api
from tests.test_keys import rsa_sign
from tests.test_token_state import bearer, introspect


@pytest.fixture(scope="module")
def next_pair() -> tuple[str, str]:
    return generate_key_pair()


@pytest.fixture(scope="module")
def env(key_pair: tuple[str, str]) -> dict[str, str]:
    return {"SSO_JWT_PRIVATE_KEY": key_pair[0], "SSO_JWT_PUBLIC_KEY": key_pair[1], "SSO_SERVICE_SECRET": "s" * 32}


def public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


# -- configuration ----------------------------------------------------------------------


def test_extra_keys_load_in_order_one_line_or_not(env, next_pair):
    """Two concatenated PEM blocks, with real newlines or with \\n escapes, become two extra keys in order."""
    third = generate_key_pair()[1]
    assert load_settings(env).jwt_extra_public_keys == ()
    for raw in (next_pair[1] + third, (next_pair[1] + third).replace("\n", "\\n")):
        s = load_settings({**env, "SSO_JWT_EXTRA_PUBLIC_KEYS": raw})
        assert [k.strip() for k in s.jwt_extra_public_keys] == [next_pair[1].strip(), third.strip()]
    assert (s.jwks_max_age, s.event_log_retention) == (300, 86400)
    s = load_settings({**env, "SSO_JWKS_MAX_AGE": "60", "SSO_EVENT_LOG_RETENTION": "3600"})
    assert (s.jwks_max_age, s.event_log_retention) == (60, 3600)


@pytest.mark.parametrize(
    "make_value, problem",
    [
        (lambda pair, nxt: "not a pem", "only PEM public key blocks"),
        (lambda pair, nxt: nxt + "trailing words", "only PEM public key blocks"),
        (lambda pair, nxt: "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----", "key 1 is not a readable"),
        (lambda pair, nxt: public_pem(rsa.generate_private_key(65537, 1024)), "at least 2048 bits"),
        (lambda pair, nxt: public_pem(ec.generate_private_key(ec.SECP256R1())), "must be an RSA key"),
        (lambda pair, nxt: nxt + pair[1], "key 2 is the signing key itself"),
        (lambda pair, nxt: nxt + nxt, "key 2 is listed twice"),
    ],
    ids=["garbage", "trailing-text", "bad-block", "rsa-1024", "ec", "signing-key", "twice"],
)
def test_bad_extra_keys_stop_the_start(env, key_pair, next_pair, make_value, problem):
    """Each bad extra key names SSO_JWT_EXTRA_PUBLIC_KEYS and which key is wrong."""
    with pytest.raises(ConfigError) as info:
        load_settings({**env, "SSO_JWT_EXTRA_PUBLIC_KEYS": make_value(key_pair, next_pair[1])})
    assert info.value.variable == "SSO_JWT_EXTRA_PUBLIC_KEYS"
    assert problem in info.value.problem
    assert "PRIVATE KEY" not in str(info.value)


@pytest.mark.parametrize("variable", ["SSO_JWKS_MAX_AGE", "SSO_EVENT_LOG_RETENTION"])
def test_bad_max_age_and_retention_name_themselves(env, variable):
    for value in ("ten", "-1", "30" if variable == "SSO_EVENT_LOG_RETENTION" else "1.5"):
        with pytest.raises(ConfigError) as info:
            load_settings({**env, variable: value})
        assert info.value.variable == variable


def test_keyset_refuses_repeated_keys_and_a_signing_key_not_first(key_pair, next_pair):
    with pytest.raises(ValueError, match="twice"):
        KeySet(key_pair[0], [key_pair[1], key_pair[1]])
    with pytest.raises(ValueError, match="first"):
        KeySet(key_pair[0], [next_pair[1], key_pair[1]])


# -- the JWKS and verification across a switch -------------------------------------------


@pytest.fixture
def build(settings: Settings, clock, redis) -> Iterator[Any]:
    """Apps on the same Redis and prefix as ``app``, with other keys: the instances of a rotation."""
    made: list[Flask] = []

    def make(private_pem: str, public_pem: str, extras: tuple[str, ...] = (), **overrides: Any) -> Flask:
        values = {**settings.__dict__, "jwt_private_key": private_pem, "jwt_public_key": public_pem}
        application = create_app(Settings(**{**values, "jwt_extra_public_keys": extras, **overrides}), clock=clock)
        made.append(application)
        return application

    yield make
    for application in made:
        application.extensions["sso"].redis.close()


def test_jwks_lists_the_signing_key_first_then_the_extras(build, key_pair, next_pair):
    """Signing key first, each extra after it with its own RFC 7638 kid; max-age from SSO_JWKS_MAX_AGE."""
    third = generate_key_pair()[1]
    app = build(next_pair[0], next_pair[1], (key_pair[1], third), jwks_max_age=42)
    response = app.test_client().get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=42"
    kids = [jwk["kid"] for jwk in response.get_json()["keys"]]
    expected = [KeySet(pair[0], [pair[1]]).kid for pair in (next_pair, key_pair)]
    assert kids[:2] == expected and len(kids) == 3 and len(set(kids)) == 3
    assert app.extensions["sso"].keys.kid == kids[0]  # new tokens are signed with the first key


def test_tokens_of_the_old_key_pass_after_the_switch(oauth, api, build, key_pair, next_pair, client):
    """After the switch (new signing key, old one as extra) /userinfo, /introspect, /revoke and an
    id_token_hint signed by the old key are still accepted; new tokens carry the new kid."""
    session = oauth.login()
    old = oauth.tokens()
    switched = build(next_pair[0], next_pair[1], (key_pair[1],))
    new_client = switched.test_client()
    new_api = Api(new_client, api.headers)
    assert new_client.get("/userinfo", headers=bearer(old["access_token"])).status_code == 200
    assert introspect(new_api, old["access_token"])["active"] is True
    refreshed = new_client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": old["refresh_token"], "client_id": "fluxer"}
    ).get_json()
    claims = switched.extensions["sso"].tokens.verify_access_token(refreshed["access_token"])
    assert claims["sid"] == session["session_id_hash"]
    assert new_client.post("/revoke", data={"token": old["access_token"], "client_id": "fluxer"}).status_code == 200
    assert introspect(new_api, old["access_token"])["active"] is False  # revocation reached the old-key token
    new_client.set_cookie(COOKIE_NAME, session["token"], domain="localhost")
    ended = new_client.get("/logout", query_string={"id_token_hint": old["id_token"]})
    assert ended.status_code == 200 and ended.get_json() == {"logged_out": True}


def test_tokens_of_a_dropped_or_unknown_key_fail(oauth, api, build, key_pair, next_pair, clock):
    """Without the old key published its tokens fail; so does a token by a stranger's key, whether its
    kid is unknown or copies a published kid."""
    oauth.login()
    old = oauth.tokens()
    dropped = build(next_pair[0], next_pair[1])
    client = dropped.test_client()
    dropped_api = Api(client, api.headers)
    assert client.get("/userinfo", headers=bearer(old["access_token"])).status_code == 401
    assert introspect(dropped_api, old["access_token"]) == {"active": False}
    hint = client.get("/logout", query_string={"id_token_hint": old["id_token"]})
    assert hint.status_code == 400 and hint.get_json()["error"] == "invalid_request"

    stranger = generate_key_pair()
    rotating = build(next_pair[0], next_pair[1], (key_pair[1],))
    claims = rotating.extensions["sso"].tokens.verify_access_token(
        rotating.extensions["sso"].tokens.mint_access_token(
            user_id="42",
            sid="s" * 43,
            client_id="fluxer",
            scope="openid",
            jti="j",
            session_expires_at=int(clock()) + 60,
            family_expires_at=int(clock()) + 60,
        )[0]
    )
    for kid in ("unknown-kid", KeySet(key_pair[0], [key_pair[1]]).kid):
        forged = rsa_sign(stranger[0], {"alg": "RS256", "typ": "at+jwt", "kid": kid}, claims)
        r = rotating.test_client().get("/userinfo", headers=bearer(forged))
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        assert introspect(Api(rotating.test_client(), api.headers), forged) == {"active": False}
        with pytest.raises(TokenRejected):
            rotating.extensions["sso"].tokens.verify_access_token(forged)


# -- the operator command -----------------------------------------------------------------


def steps(output: str) -> list[dict[str, str | None]]:
    """The .env lines of each step of `sso rotate-keys`, parsed as python-dotenv reads them."""
    chunks = output.split("# Step ")[1:]
    return [dict(dotenv_values(stream=io.StringIO(chunk))) for chunk in chunks]


@pytest.mark.parametrize("settings_overrides", [{"access_token_ttl": 600, "jwks_max_age": 120}])
def test_rotate_keys_prints_steps_that_load(app, settings, key_pair):
    """Waits come from the configuration; each step's lines load as valid settings and serve the right JWKS."""
    result = app.test_cli_runner().invoke(args=["sso", "rotate-keys"])
    assert result.exit_code == 0, result.output
    assert "Wait at least 180 s after" in result.output and "SSO_JWKS_MAX_AGE (120 s) plus the 60 s" in result.output
    assert "Wait at least 600 s" in result.output and "access token 600 s, id token 600 s" in result.output
    publish, _wait, switch, drop = steps(result.output)
    base = {"SSO_JWT_PRIVATE_KEY": key_pair[0], "SSO_JWT_PUBLIC_KEY": key_pair[1], "SSO_SERVICE_SECRET": "s" * 32}
    loaded = [load_settings({**base, **{k: v or "" for k, v in step.items()}}) for step in (publish, switch, drop)]
    kids = [KeySet(s.jwt_private_key, [s.jwt_public_key, *s.jwt_extra_public_keys]).jwks for s in loaded]
    old_kid = KeySet(key_pair[0], [key_pair[1]]).kid
    assert kids[0]["keys"][0]["kid"] == old_kid and len(kids[0]["keys"]) == 2  # step 1: the next key published
    new_kid = kids[0]["keys"][1]["kid"]
    assert [k["kid"] for k in kids[1]["keys"]] == [new_kid, old_kid]  # step 3: switched, old kept
    assert [k["kid"] for k in kids[2]["keys"]] == [old_kid]  # drop left base's key; a real .env holds the new one
    assert loaded[1].jwt_private_key != key_pair[0]


def test_the_rotation_wait_counts_the_ttl_nginx_caches_the_jwks_for():
    """The shipped nginx site caches the JWKS for exactly the EDGE_CACHE_TTL that step 2 adds to its wait."""
    import re

    from sso.cli import EDGE_CACHE_TTL
    from tests.deploy_files import DEPLOY

    site = (DEPLOY / "nginx" / "fluxer-sso.conf").read_text()
    assert re.findall(r"^\s*proxy_cache_valid\s+(.*);", site, re.MULTILINE) == [f"200 {EDGE_CACHE_TTL}s"]


def test_rotate_keys_keeps_extras_of_an_earlier_rotation(build, key_pair, next_pair):
    earlier = generate_key_pair()[1]
    app = build(key_pair[0], key_pair[1], (earlier,))
    output = app.test_cli_runner().invoke(args=["sso", "rotate-keys"]).output
    publish, _wait, switch, drop = steps(output)
    for step in (publish, switch, drop):
        assert earlier.strip() in (step["SSO_JWT_EXTRA_PUBLIC_KEYS"] or "")
    assert drop["SSO_JWT_EXTRA_PUBLIC_KEYS"].strip() == earlier.strip()
    assert "drop each once its own wait is over" in output


def test_old_key_tokens_expire_normally_after_the_switch(oauth, build, key_pair, next_pair, clock):
    """Accepting an old key changes nothing about expiry: past its exp an old-key token is inactive."""
    oauth.login()
    old = oauth.tokens()
    switched = build(next_pair[0], next_pair[1], (key_pair[1],))
    clock.advance(old["expires_in"] + 1)
    assert switched.test_client().get("/userinfo", headers=bearer(old["access_token"])).status_code == 401
