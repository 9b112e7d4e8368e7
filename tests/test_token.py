"""The token endpoint: code grant, refresh rotation, reuse detection (RFC 6749, 7636, 9700)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from sso.cookies import COOKIE_NAME
from sso.digests import token_hash
from sso.store.layout import RefreshToken, code_bucket
from tests.conftest import CHALLENGE, REDIRECT_URI, VERIFIER
from tests.test_token_state import introspect

pytestmark = pytest.mark.topologies


def jwt_parts(token: str) -> tuple[dict, dict]:
    header, payload, _ = token.split(".")
    return (json.loads(base64.urlsafe_b64decode(header + "==")), json.loads(base64.urlsafe_b64decode(payload + "==")))


def test_code_exchange_returns_tokens(oauth, services, settings, clock):
    """A valid exchange returns an RFC 9068 access token, an id token and a refresh token, uncached."""
    session = oauth.login()
    response = oauth.exchange(oauth.code())
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store" and response.headers["Pragma"] == "no-cache"
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope", "id_token"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == settings.access_token_ttl
    assert body["scope"] == "openid profile email"
    header, claims = jwt_parts(body["access_token"])
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": services.keys.kid}
    assert set(claims) == {"iss", "sub", "aud", "client_id", "scope", "sid", "iat", "exp", "jti"}
    assert claims["iss"] == "http://sso.test" and claims["sub"] == "42" and claims["aud"] == "fluxer-api"
    assert claims["client_id"] == "fluxer" and claims["sid"] == session["session_id_hash"]
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl and claims["iat"] == int(clock.now)
    id_header, id_claims = jwt_parts(body["id_token"])
    assert id_header["alg"] == "RS256" and id_header["typ"] == "JWT" and id_header["kid"] == services.keys.kid
    assert id_claims["aud"] == "fluxer" and id_claims["nonce"] == "n-0S6_WzA2Mj"
    assert id_claims["sid"] == session["session_id_hash"] and id_claims["iss"] == "http://sso.test"
    assert id_claims["auth_time"] <= id_claims["iat"] < id_claims["exp"]
    digest = hashlib.sha256(body["access_token"].encode()).digest()[:16]
    assert id_claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert len(body["refresh_token"]) >= 43 and "." not in body["refresh_token"]


def test_no_id_token_without_openid(oauth):
    oauth.login()
    body = oauth.tokens(scope="profile")
    assert "id_token" not in body and body["scope"] == "profile"


@pytest.mark.parametrize("nonce", ["n-\u00e9\u00e8-\u4e2d\u6587", "n-\U0001f600", 'n-"quoted"/\\slash\\'])
def test_nonce_survives_the_code_binding_unchanged(oauth, nonce):
    """The code's binding goes through Lua's cjson: non-ASCII, astral and escaped characters come back as sent."""
    oauth.login()
    assert jwt_parts(oauth.tokens(nonce=nonce)["id_token"])[1]["nonce"] == nonce


def test_no_nonce_claim_when_none_sent(oauth):
    oauth.login()
    assert "nonce" not in jwt_parts(oauth.tokens(nonce=None)["id_token"])[1]


def dump_prefix(redis, prefix: str) -> str:
    """Every key and value under the test's prefix, as text."""
    readers = {"hash": redis.hgetall, "string": redis.get, "set": redis.smembers,
               "zset": lambda k: redis.zrange(k, 0, -1)}  # fmt: skip
    return repr({k: readers[redis.type(k)](k) for k in redis.scan_iter(match=f"{prefix}*")})


def test_tokens_are_stored_only_as_hashes(oauth, redis, prefix):
    """A dump of Redis holds no session token, code, refresh token or access token."""
    session = oauth.login()
    code = oauth.code()
    body = oauth.exchange(code).get_json()
    dump = dump_prefix(redis, prefix)
    assert RefreshToken.parse(body["refresh_token"]).fid in dump  # the dump is real: the family is in it
    for secret in (session["token"], code, body["refresh_token"], body["access_token"], body["id_token"]):
        assert secret not in dump


@pytest.mark.parametrize(
    "overrides, status, error",
    [
        ({"code_verifier": "x" * 43}, 400, "invalid_grant"),
        ({"code_verifier": None}, 400, "invalid_request"),
        ({"code_verifier": "short"}, 400, "invalid_request"),
        ({"redirect_uri": "http://admin.test/oauth/callback"}, 400, "invalid_grant"),
        ({"redirect_uri": None}, 400, "invalid_request"),
        ({"client_id": "fluxer-admin"}, 400, "invalid_grant"),
        ({"client_id": "nobody"}, 401, "invalid_client"),
        ({"client_id": None}, 401, "invalid_client"),
        ({"code": "not-a-code"}, 400, "invalid_grant"),
        ({"code": None}, 400, "invalid_request"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": None}, 400, "invalid_request"),
    ],
)
def test_code_exchange_errors(oauth, redis, keys, overrides, status, error):
    """Each binding (client, redirect URI, PKCE) is checked; errors are RFC 6749 §5.2 JSON; nothing is issued."""
    oauth.login()
    code = oauth.code()
    response = oauth.exchange(code, **overrides)
    assert response.status_code == status
    assert response.get_json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"
    session = oauth.client.get_cookie(COOKIE_NAME, domain="localhost").value
    assert [f for f in redis.hkeys(keys.session(token_hash(session))) if f.startswith("f:")] == []  # no family


def test_failed_pkce_burns_the_code(oauth):
    """A wrong verifier consumes the code: no brute forcing the verifier against one code."""
    oauth.login()
    code = oauth.code()
    assert oauth.exchange(code, code_verifier="y" * 43).status_code == 400
    assert oauth.exchange(code).get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "verifier, error",
    [(None, "invalid_request"), ("", "invalid_request"), (CHALLENGE, "invalid_grant")],
    ids=["absent", "empty", "challenge-as-plain-verifier"],
)
def test_pkce_cannot_be_downgraded_at_the_token_endpoint(oauth, verifier, error):
    """A code bound to an S256 challenge needs its verifier: none or an empty one is invalid_request (no
    guess is evaluated), and the challenge itself, what a downgrade to plain would send, is a failed
    guess that burns the code."""
    oauth.login()
    code = oauth.code()
    response = oauth.exchange(code, code_verifier=verifier)
    assert response.status_code == 400 and response.get_json()["error"] == error
    assert (oauth.exchange(code).status_code == 200) is (error == "invalid_request")


def test_code_is_single_use_and_replay_revokes_what_it_issued(oauth, services, api):
    """A second redemption fails and kills the refresh family and access token of the first."""
    oauth.login()
    code = oauth.code()
    first = oauth.exchange(code).get_json()
    replay = oauth.exchange(code)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    assert oauth.refresh(first["refresh_token"]).get_json()["error"] == "invalid_grant"
    intro = api.client.post("/introspect", data={"token": first["access_token"]}, headers=api.headers)
    assert intro.get_json() == {"active": False}


def test_code_expires_after_60_seconds(oauth, redis, keys):
    oauth.login()
    code = oauth.code()
    redis.delete(keys.code(code_bucket(code), token_hash(code)))  # what the 60 s TTL does
    assert oauth.exchange(code).get_json()["error"] == "invalid_grant"
    code = oauth.code()
    assert 55 <= redis.ttl(keys.code(code_bucket(code), token_hash(code))) <= 60


def test_code_for_ended_session_fails(oauth, api):
    session = oauth.login()
    code = oauth.code()
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [session["session_id_hash"]]})
    response = oauth.exchange(code)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


def test_token_endpoint_is_form_encoded_only(oauth):
    response = oauth.client.post("/token", json={"grant_type": "authorization_code"})
    assert response.status_code == 415 and response.get_json()["error"] == "invalid_request"


def _post_raw_exchange(oauth, extra: str):
    code = oauth.code()
    body = (
        f"grant_type=authorization_code&code={code}&redirect_uri={REDIRECT_URI}"
        f"&code_verifier={VERIFIER}&client_id=fluxer{extra.format(code=code)}"
    )
    return oauth.client.post("/token", data=body, content_type="application/x-www-form-urlencoded")


def test_repeated_token_parameter_is_rejected(oauth):
    """RFC 6749 §3.1: a parameter must not be sent twice."""
    oauth.login()
    response = _post_raw_exchange(oauth, "&code={code}")
    assert response.status_code == 400 and "code" in response.get_json()["error_description"]


def test_repeated_unknown_parameter_is_ignored(oauth):
    """RFC 6749 §3.1: unrecognised parameters are ignored, repeated or not (found by the fuzz)."""
    oauth.login()
    response = _post_raw_exchange(oauth, "&extension=1&extension=2")
    assert response.status_code == 200, response.get_json()


def test_token_cors_for_app_origins(oauth):
    ok = oauth.client.options("/token", headers={"Origin": "http://app.test", "Access-Control-Request-Method": "POST"})
    assert ok.headers["Access-Control-Allow-Origin"] == "http://app.test"
    assert "Access-Control-Allow-Credentials" not in ok.headers
    err = oauth.client.post("/token", data={"grant_type": "x"}, headers={"Origin": "http://app.test"})
    assert err.headers["Access-Control-Allow-Origin"] == "http://app.test"  # errors readable too
    evil = oauth.client.options("/token", headers={"Origin": "http://evil.test"})
    assert "Access-Control-Allow-Origin" not in evil.headers


# -- refresh -------------------------------------------------------------------------


def test_refresh_rotates(oauth, settings):
    """Each refresh returns a new refresh token and no id token; the old one is spent."""
    oauth.login()
    first = oauth.tokens()
    response = oauth.refresh(first["refresh_token"])
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    second = response.get_json()
    assert set(second) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == "openid profile email"
    third = oauth.refresh(second["refresh_token"])
    assert third.status_code == 200


def test_refresh_reuse_revokes_the_whole_family(oauth, api, caplog):
    """Presenting a spent refresh token revokes every token of its family (RFC 9700 §4.14)."""
    oauth.login()
    first = oauth.tokens()
    second = oauth.refresh(first["refresh_token"]).get_json()
    reuse = oauth.refresh(first["refresh_token"])
    assert reuse.status_code == 400 and reuse.get_json()["error"] == "invalid_grant"
    assert oauth.refresh(second["refresh_token"]).get_json()["error"] == "invalid_grant"
    for token in (second["access_token"], second["refresh_token"]):
        intro = api.client.post("/introspect", data={"token": token}, headers=api.headers)
        assert intro.get_json() == {"active": False}
    assert first["refresh_token"] not in caplog.text and second["refresh_token"] not in caplog.text


def test_refresh_other_families_survive_reuse(oauth):
    """Revocation is per family: another app's tokens on the same session live on."""
    oauth.login()
    a, b = oauth.tokens(), oauth.tokens()
    oauth.refresh(a["refresh_token"])
    oauth.refresh(a["refresh_token"])  # reuse: family a dies
    assert oauth.refresh(b["refresh_token"]).status_code == 200


@pytest.mark.parametrize("settings_overrides", [{"refresh_reuse_grace": 30}])
def test_grace_window_returns_the_same_successor(oauth, clock):
    """Within the grace window a retry gets the same successor, not a new branch."""
    oauth.login()
    first = oauth.tokens()
    a = oauth.refresh(first["refresh_token"]).get_json()
    clock.advance(10)
    b = oauth.refresh(first["refresh_token"]).get_json()
    assert b["refresh_token"] == a["refresh_token"] and b["access_token"] != a["access_token"]
    assert oauth.refresh(a["refresh_token"]).status_code == 200  # the chain continues


@pytest.mark.parametrize("settings_overrides", [{"refresh_reuse_grace": 30}])
def test_reuse_after_grace_revokes(oauth, clock):
    oauth.login()
    first = oauth.tokens()
    a = oauth.refresh(first["refresh_token"]).get_json()
    clock.advance(31)
    assert oauth.refresh(first["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert oauth.refresh(a["refresh_token"]).get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("settings_overrides", [{"refresh_reuse_grace": 30}])
def test_grace_does_not_cover_older_generations(oauth, clock):
    """Only the immediate predecessor is forgiven; a grandparent token is theft."""
    oauth.login()
    first = oauth.tokens()
    second = oauth.refresh(first["refresh_token"]).get_json()
    third = oauth.refresh(second["refresh_token"]).get_json()
    assert oauth.refresh(first["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert oauth.refresh(third["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_scope_can_narrow_but_not_widen(oauth):
    oauth.login()
    first = oauth.tokens(scope="openid profile")
    narrowed = oauth.refresh(first["refresh_token"], scope="openid")
    assert narrowed.status_code == 200 and narrowed.get_json()["scope"] == "openid"
    _, claims = jwt_parts(narrowed.get_json()["access_token"])
    assert claims["scope"] == "openid"
    widened = oauth.refresh(narrowed.get_json()["refresh_token"], scope="openid email")
    assert widened.status_code == 400 and widened.get_json()["error"] == "invalid_scope"
    # the refused request did not spend the token, and the original grant is kept
    again = oauth.refresh(narrowed.get_json()["refresh_token"])
    assert again.status_code == 200 and again.get_json()["scope"] == "openid profile"
    assert oauth.refresh(again.get_json()["refresh_token"], scope="bogus").get_json()["error"] == "invalid_scope"


def test_refresh_by_another_client_fails_and_leaves_token(oauth):
    oauth.login()
    first = oauth.tokens()
    response = oauth.refresh(first["refresh_token"], client_id="fluxer-admin")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"
    assert oauth.refresh(first["refresh_token"]).status_code == 200


def test_refresh_after_session_invalidation_fails(oauth, api, redis, keys):
    """Invalidating a session kills its refresh families at once, keys included."""
    session = oauth.login()
    first = oauth.tokens()
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [session["session_id_hash"]]})
    assert oauth.refresh(first["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert not redis.exists(keys.session(session["session_id_hash"]))  # the families lived in the record


def test_refresh_never_outlives_the_session(oauth, clock, settings, redis, keys):
    """The family's lifetime is capped at the session's, and access tokens too."""
    session = oauth.login()
    clock.advance(settings.session_ttl - 100)
    body = oauth.tokens()
    assert body["expires_in"] <= 100
    fid = RefreshToken.parse(body["refresh_token"]).fid
    family_expiry = int(redis.hget(keys.session(session["session_id_hash"]), f"f:{fid}").split()[5])
    assert family_expiry <= clock.now + 100  # the session ends in 100 s
    clock.advance(101)
    assert oauth.refresh(body["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert session


@pytest.mark.parametrize("settings_overrides", [{"refresh_token_ttl": 50}])
def test_refresh_family_expires(oauth, clock):
    oauth.login()
    body = oauth.tokens()
    clock.advance(51)
    assert oauth.refresh(body["refresh_token"]).get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("settings_overrides", [{"refresh_token_ttl": 600}])
def test_access_tokens_never_outlive_their_refresh_family(oauth, api, clock, settings, redis, keys):
    """An access token minted near its family's expiry (code exchange or refresh) expires with the family,
    to the second, and the store recorded that same exp: a family that expires leaves no live token."""
    session = oauth.login()
    body = oauth.tokens()
    fid = RefreshToken.parse(body["refresh_token"]).fid
    family = redis.hget(keys.session(session["session_id_hash"]), f"f:{fid}").split()
    family_expiry = int(family[5])
    assert family_expiry == int(clock.now) + 600 < int(clock.now) + settings.access_token_ttl
    assert jwt_parts(body["access_token"])[1]["exp"] == family_expiry and body["expires_in"] == 600
    assert jwt_parts(body["id_token"])[1]["exp"] == family_expiry
    clock.advance(590)
    refreshed = oauth.refresh(body["refresh_token"]).get_json()
    assert jwt_parts(refreshed["access_token"])[1]["exp"] == family_expiry and refreshed["expires_in"] == 10
    family = redis.hget(keys.session(session["session_id_hash"]), f"f:{fid}").split()
    assert int(family[4]) == family_expiry  # the latest exp the store would revoke on ending the family
    assert introspect(api, refreshed["access_token"])["active"] is True
    clock.advance(10)
    assert introspect(api, refreshed["access_token"]) == {"active": False}


def test_refresh_marks_activity(oauth, clock, services, redis, keys):
    session = oauth.login()
    body = oauth.tokens()
    clock.advance(services.settings.activity_update_interval + 1)
    oauth.refresh(body["refresh_token"])
    services.worker.run_once()
    assert int(redis.hget(keys.session(session["session_id_hash"]), "last_active_at")) == int(clock.now)


@pytest.mark.parametrize("token", ["", "garbage", "a" * 600])
def test_refresh_garbage(oauth, token):
    response = oauth.refresh(token)
    assert response.status_code == 400
    assert response.get_json()["error"] in ("invalid_grant", "invalid_request")


def family_alive(oauth, refresh_token: str) -> bool:
    return oauth.refresh(refresh_token).status_code == 200


@pytest.mark.parametrize("extra", [{"scope": "openid email"}, {"client_id": "fluxer-admin"}], ids=["scope", "client"])
def test_a_spent_refresh_token_is_reuse_whatever_else_the_request_gets_wrong(oauth, extra, services, events):
    """A genuine spent refresh token ends its family (RFC 9700 §4.14) also with a widened scope or as
    another client: the client and scope checks belong to current tokens."""
    oauth.login()
    first = oauth.tokens(scope="openid profile")
    second = oauth.refresh(first["refresh_token"]).get_json()
    events.drain()
    reuse = oauth.refresh(first["refresh_token"], **extra)
    assert reuse.status_code == 400 and reuse.get_json()["error"] == "invalid_grant"
    assert not family_alive(oauth, second["refresh_token"])
    services.worker.run_once()
    assert [e["reason"] for e in events.drain() if e["type"] == "tokens-revoked"] == ["refresh-reuse"]


@pytest.mark.parametrize("settings_overrides", [{"refresh_reuse_grace": 30}])
def test_a_grace_replay_still_checks_client_and_scope(oauth):
    """Within the grace window the predecessor is not reuse, so a widened scope or another client is
    refused and the family lives on."""
    oauth.login()
    first = oauth.tokens(scope="openid profile")
    second = oauth.refresh(first["refresh_token"]).get_json()
    assert oauth.refresh(first["refresh_token"], scope="openid email").get_json()["error"] == "invalid_scope"
    assert oauth.refresh(first["refresh_token"], client_id="fluxer-admin").get_json()["error"] == "invalid_grant"
    assert family_alive(oauth, second["refresh_token"])


def test_rotation_is_never_refused_for_how_often_it_happens(oauth):
    """A client (or a benchmark) refreshing back to back is a valid caller: 300 rotations within one
    access-token lifetime, every one answered, the last successor still good."""
    oauth.login()
    token = oauth.tokens()["refresh_token"]
    for _ in range(300):
        response = oauth.refresh(token)
        assert response.status_code == 200, response.get_json()
        token = response.get_json()["refresh_token"]
    assert oauth.refresh(token).status_code == 200
