"""The authorization endpoint (RFC 6749 §4.1, RFC 7636, OIDC Core §3.1.2, RFC 9207)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from sso.digests import token_hash
from sso.store.layout import code_bucket, sid_bucket
from tests.conftest import CHALLENGE, REDIRECT_URI, VERIFIER

pytestmark = pytest.mark.topologies


def location(response) -> tuple[str, dict[str, str]]:
    assert response.status_code == 302, response.get_data(as_text=True)
    parts = urlsplit(response.headers["Location"])
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    return base, {k: v[0] for k, v in parse_qs(parts.query).items()}


def test_success_redirects_with_code_state_and_iss(oauth, redis, prefix, keys):
    """With a valid cookie: 302 to the redirect URI with code, state and iss; the code is stored hashed."""
    session = oauth.login()
    response = oauth.authorize()
    assert response.headers["Cache-Control"] == "no-store"
    base, query = location(response)
    assert base == REDIRECT_URI
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == "xyz-state" and query["iss"] == "http://sso.test"
    assert len(query["code"]) >= 43
    assert code_bucket(query["code"]) == sid_bucket(session["session_id_hash"])  # the session's bucket
    key = keys.code(code_bucket(query["code"]), token_hash(query["code"]))
    stored = json.loads(redis.hget(key, "data"))
    assert stored == {
        "client_id": "fluxer", "redirect_uri": REDIRECT_URI, "code_challenge": CHALLENGE,
        "sid": session["session_id_hash"], "user_id": "42", "scope": "openid profile email",
        "nonce": "n-0S6_WzA2Mj", "auth_time": stored["auth_time"],
    }  # fmt: skip
    assert 0 < redis.ttl(key) <= 60
    assert query["code"] not in str(list(redis.scan_iter(match=f"{prefix}*")))


def test_post_form_is_accepted(oauth):
    """OIDC Core §3.1.2.1: the authorization endpoint supports POST too."""
    oauth.login()
    response = oauth.client.post("/authorize", data=oauth.authorize_params())
    assert "code" in location(response)[1]


def test_unknown_extra_parameters_are_ignored(oauth):
    oauth.login()
    assert "code" in location(oauth.authorize(foo="bar", ui_locales="en"))[1]


def test_repeated_unknown_parameter_is_ignored(oauth):
    """Unknown parameters are ignored even when repeated, and not carried to the login page."""
    query = "&".join(f"{k}={v}" for k, v in oauth.authorize_params().items()) + "&ext=1&ext=2"
    base, reply = location(oauth.client.get(f"/authorize?{query}"))
    assert base == "http://app.test/login" and "ext" not in reply["return_to"]
    oauth.login()
    assert "code" in location(oauth.client.get(f"/authorize?{query}"))[1]


def test_state_is_optional(oauth):
    oauth.login()
    assert set(location(oauth.authorize(state=None))[1]) == {"code", "iss"}


@pytest.mark.parametrize(
    "redirect_uri",
    [
        None,
        "http://app.test/oauth/callback/",
        "http://app.test/oauth/callback?x=1",
        "http://APP.test/oauth/callback",
        "http://app.test/oauth/Callback",
        "http://app.test/oauth/../oauth/callback",
        "http://a@evil.test/oauth/callback",
        "http://app.test@evil.test/oauth/callback",
        "https://app.test/oauth/callback",
        "javascript:alert(1)",
        "http://evil.test/oauth/callback",
        "http://app.test/oauth/callback#frag",
        " http://app.test/oauth/callback",
    ],
)
def test_bad_redirect_uri_is_never_redirected_to(oauth, redirect_uri):
    """Exact string matching: any variation is an error shown to the user, not a redirect."""
    oauth.login()
    response = oauth.authorize(redirect_uri=redirect_uri)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.get_json()["error"] == "invalid_request"
    assert "redirect_uri" in response.get_json()["error_description"]


@pytest.mark.parametrize("client_id", [None, "unknown", "FLUXER", ""])
def test_bad_client_is_never_redirected_to(oauth, client_id):
    oauth.login()
    response = oauth.authorize(client_id=client_id)
    assert response.status_code == 400 and "Location" not in response.headers
    assert response.get_json()["error"] == "invalid_client"


def test_repeated_client_or_redirect_uri_is_not_redirected(oauth):
    oauth.login()
    params = oauth.authorize_params()
    query = "&".join(f"{k}={v}" for k, v in params.items()) + "&redirect_uri=http://evil.test/cb"
    response = oauth.client.get(f"/authorize?{query}")
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.parametrize(
    "overrides, error, mentions",
    [
        ({"response_type": None}, "invalid_request", "response_type"),
        ({"response_type": "token"}, "unsupported_response_type", ""),
        ({"response_type": "code id_token"}, "unsupported_response_type", ""),
        ({"code_challenge": None}, "invalid_request", "code_challenge"),
        ({"code_challenge_method": None}, "invalid_request", "code_challenge_method"),
        ({"code_challenge_method": "plain"}, "invalid_request", "S256"),
        ({"code_challenge_method": "s256"}, "invalid_request", "S256"),
        ({"code_challenge": "tooshort"}, "invalid_request", "code_challenge"),
        ({"scope": "openid admin"}, "invalid_scope", "admin"),
        ({"prompt": "none login"}, "invalid_request", "prompt"),
        ({"prompt": "create"}, "invalid_request", "prompt"),
        ({"max_age": "-1"}, "invalid_request", "max_age"),
        ({"max_age": "soon"}, "invalid_request", "max_age"),
        ({"request": "eyJ..."}, "request_not_supported", ""),
        ({"request_uri": "https://x.test/r"}, "request_uri_not_supported", ""),
        ({"response_mode": "fragment"}, "invalid_request", "response_mode"),
        ({"state": "s" * 2000}, "invalid_request", "state"),
    ],
)
def test_other_errors_redirect_with_error_state_and_iss(oauth, redis, prefix, overrides, error, mentions):
    """After client and redirect URI check out, errors go back to the client with state and iss."""
    oauth.login()
    before = set(redis.scan_iter(match=f"{prefix}code:*"))
    base, query = location(oauth.authorize(**overrides))
    assert base == REDIRECT_URI
    assert query["error"] == error
    assert mentions in query.get("error_description", "")
    assert query["iss"] == "http://sso.test"
    if "state" not in overrides:
        assert query["state"] == "xyz-state"
    assert "code" not in query
    assert set(redis.scan_iter(match=f"{prefix}code:*")) == before


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge": None},
        {"code_challenge_method": None},
        {"code_challenge_method": "plain"},
        {"code_challenge": VERIFIER, "code_challenge_method": "plain"},
        {"code_challenge": "", "code_challenge_method": "S256"},
    ],
    ids=["no-pkce", "no-challenge", "no-method", "plain", "plain-verifier-as-challenge", "empty"],
)
def test_no_code_is_ever_issued_without_an_s256_challenge(oauth, redis, prefix, overrides):
    """PKCE downgrade (RFC 9700 §4.8.2): a code without an S256 challenge does not exist, so no verifier
    can ever be checked against a challenge-less code; with a live session the request still gets none."""
    oauth.login()
    base, query = location(oauth.authorize(**overrides))
    assert base == REDIRECT_URI and query["error"] == "invalid_request" and "code" not in query
    assert list(redis.scan_iter(match=f"{prefix}code:*")) == []


def test_repeated_parameter_is_invalid_request_redirected(oauth):
    oauth.login()
    params = oauth.authorize_params()
    query = "&".join(f"{k}={v}" for k, v in params.items()) + "&scope=openid"
    base, reply = location(oauth.client.get(f"/authorize?{query}"))
    assert reply["error"] == "invalid_request" and "scope" in reply["error_description"]


def test_no_cookie_sends_to_login_with_return_to(oauth):
    """Without a session the browser goes to the login URL, which sends it back here afterwards."""
    base, query = location(oauth.authorize())
    assert base == "http://app.test/login"
    return_to = urlsplit(query["return_to"])
    assert f"{return_to.scheme}://{return_to.netloc}{return_to.path}" == "http://sso.test/authorize"
    assert parse_qs(return_to.query)["code_challenge"] == [CHALLENGE]
    assert parse_qs(return_to.query)["state"] == ["xyz-state"]


def test_invalid_cookie_is_treated_as_no_session(oauth):
    from sso.cookies import COOKIE_NAME

    oauth.client.set_cookie(COOKIE_NAME, "forged-token", domain="localhost")
    assert location(oauth.authorize())[0] == "http://app.test/login"


def test_prompt_none_without_session_is_login_required(oauth):
    base, query = location(oauth.authorize(prompt="none"))
    assert base == REDIRECT_URI
    assert query["error"] == "login_required" and query["state"] == "xyz-state" and query["iss"]


def test_prompt_none_with_session_succeeds_silently(oauth):
    oauth.login()
    assert "code" in location(oauth.authorize(prompt="none"))[1]


def test_prompt_login_forces_login_and_drops_prompt_from_return_to(oauth):
    """prompt=login goes to the login page even with a session; coming back must not loop."""
    oauth.login()
    base, query = location(oauth.authorize(prompt="login"))
    assert base == "http://app.test/login"
    assert "prompt" not in parse_qs(urlsplit(query["return_to"]).query)


def test_max_age_exceeded_forces_login(oauth, clock):
    oauth.login()
    clock.advance(120)
    assert location(oauth.authorize(max_age="60"))[0] == "http://app.test/login"
    assert "code" in location(oauth.authorize(max_age="600"))[1]
    base, query = location(oauth.authorize(max_age="60", prompt="none"))
    assert query["error"] == "login_required"


def test_expired_session_cookie_sends_to_login_and_stores_no_code(oauth, clock, services, redis, prefix):
    """A session past its expiry by the service's clock is no session: login page, no code stored."""
    oauth.login()
    clock.advance(services.settings.session_ttl + 1)
    assert location(oauth.authorize())[0] == "http://app.test/login"
    assert location(oauth.authorize(prompt="none"))[1]["error"] == "login_required"
    assert not list(redis.scan_iter(match=f"{prefix}code:*"))


@pytest.mark.parametrize("overrides", [{"prompt": "login"}, {"max_age": "60"}])
def test_fresh_login_request_stores_no_code(oauth, clock, redis, prefix, overrides):
    """The session check and the code's storage are one step: a session refused for age stores nothing."""
    oauth.login()
    clock.advance(120)
    assert location(oauth.authorize(**overrides))[0] == "http://app.test/login"
    assert not list(redis.scan_iter(match=f"{prefix}code:*"))


def test_ended_session_cookie_sends_to_login(oauth, api):
    session = oauth.login()
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [session["session_id_hash"]]})
    assert location(oauth.authorize())[0] == "http://app.test/login"


def test_authorize_marks_activity(oauth, clock, services, redis, keys):
    session = oauth.login()
    clock.advance(services.settings.activity_update_interval + 5)
    oauth.code()
    services.worker.run_once()
    assert int(redis.hget(keys.session(session["session_id_hash"]), "last_active_at")) == int(clock.now)


def test_redirect_uri_with_query_keeps_it(oauth, settings):
    """A registered redirect URI with its own query gets the reply appended with &."""
    import dataclasses

    from app import create_app

    uri = "http://app.test/oauth/callback?tenant=a"
    app = create_app(
        dataclasses.replace(settings, allowed_redirect_uris=(uri,)),
        clock=oauth.client.application.extensions["sso"].clock,
    )
    client = app.test_client()
    from tests.conftest import Api, OAuth

    flow = OAuth(client, Api(client, oauth.api.headers))
    flow.login()
    response = flow.authorize(redirect_uri=uri)
    assert response.headers["Location"].startswith(uri + "&code=")


def follow_return_to(oauth, login_location: str):
    """What the login page does after signing the user in: send the browser back."""
    return_to = parse_qs(urlsplit(login_location).query)["return_to"][0]
    parts = urlsplit(return_to)
    return oauth.client.get(f"{parts.path}?{parts.query}")


@pytest.mark.parametrize("overrides", [{"prompt": "login"}, {"max_age": "0"}, {"max_age": "5"}])
def test_fresh_login_requests_do_not_loop_and_are_enforced(oauth, clock, overrides):
    """prompt=login / max_age: coming back with the old session is refused, with a new one it succeeds."""
    oauth.login()
    clock.advance(10)
    first = oauth.authorize(**overrides)
    base, query = location(first)
    assert base == "http://app.test/login"
    back = parse_qs(urlsplit(query["return_to"]).query)
    assert "prompt" not in back and "max_age" not in back and back["auth_after"] == [str(int(clock.now))]
    # the login page did not really sign in again: still the old session
    assert location(follow_return_to(oauth, first.headers["Location"]))[0] == "http://app.test/login"
    clock.advance(1)
    oauth.login()  # a real sign-in: a session created after the request
    assert "code" in location(follow_return_to(oauth, first.headers["Location"]))[1]


def test_auth_after_in_the_future_is_refused(oauth, clock):
    oauth.login()
    _, query = location(oauth.authorize(auth_after=str(int(clock.now) + 3600)))
    assert query["error"] == "invalid_request" and "auth_after" in query["error_description"]


@pytest.mark.parametrize(
    "name", ["max_age", "auth_after", "response_mode", "request", "request_uri", "prompt", "nonce"]
)
def test_parameter_sent_without_a_value_is_treated_as_omitted(oauth, name):
    """RFC 6749 §3.1: an empty parameter is as if it were not there, so the request gets its code."""
    oauth.login()
    base, query = location(oauth.authorize(**{name: ""}))
    assert base == REDIRECT_URI and "error" not in query and query["code"]


def test_empty_state_is_not_echoed(oauth):
    oauth.login()
    ok = oauth.authorize(state="")
    _, query = location(ok)
    assert "code" in query and "state=" not in ok.headers["Location"]
    failed = oauth.authorize(state="", response_mode="fragment")
    _, query = location(failed)
    assert query["error"] == "invalid_request" and "state=" not in failed.headers["Location"]


def test_error_description_keeps_to_the_characters_rfc_6749_allows(oauth):
    """RFC 6749 §4.1.2.1: error_description is %x20-21 / %x23-5B / %x5D-7E, whatever scope was asked for."""
    oauth.login()
    _, query = location(oauth.authorize(scope='openid "\u00e9\\<x>'))
    assert query["error"] == "invalid_scope"
    assert all(c == " " or c == "!" or 0x23 <= ord(c) <= 0x7E and c != "\\" for c in query["error_description"])


def test_id_token_hint_of_the_signed_in_user_gets_a_silent_code(oauth):
    oauth.login("42")
    hint = oauth.tokens()["id_token"]
    _, query = location(oauth.authorize(prompt="none", id_token_hint=hint))
    assert query["code"] and "error" not in query


def test_id_token_hint_of_another_user_never_gets_that_session_a_code(oauth, redis, prefix):
    """OIDC Core §3.1.2.1: the hint names alice, the cookie is bob's: a silent renewal is
    login_required (not bob's code), an interactive one goes to the login page; no code is stored."""
    oauth.login("alice")
    hint = oauth.tokens()["id_token"]
    oauth.login("bob")
    before = set(redis.scan_iter(match=f"{prefix}*c:*"))
    base, query = location(oauth.authorize(prompt="none", id_token_hint=hint))
    assert base == REDIRECT_URI and query["error"] == "login_required" and "code" not in query
    login = oauth.authorize(id_token_hint=hint)
    assert login.status_code == 302 and login.headers["Location"].startswith("http://app.test/login?")
    assert "id_token_hint" in parse_qs(urlsplit(login.headers["Location"]).query)["return_to"][0]
    assert set(redis.scan_iter(match=f"{prefix}*c:*")) == before


def test_an_id_token_hint_that_is_not_ours_is_invalid_request(oauth):
    oauth.login()
    base, query = location(oauth.authorize(prompt="none", id_token_hint="not.a.token"))
    assert base == REDIRECT_URI and query["error"] == "invalid_request"
    assert "id_token_hint" in query["error_description"]
    access = oauth.tokens()["access_token"]  # an access token is not an id token
    assert location(oauth.authorize(id_token_hint=access))[1]["error"] == "invalid_request"
