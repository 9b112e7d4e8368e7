"""GET /logout: OpenID Connect RP-Initiated Logout."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from sso.cookies import COOKIE_NAME


def validate(api, session) -> bool:
    return api.post("/session/validate", {"token_hash": session["session_id_hash"]}).get_json()["valid"]


def test_valid_hint_for_the_cookie_session_ends_it(oauth, api, services, events):
    """The hint's sid is the cookie's session: that session ends, the cookie clears, the event goes out."""
    session = oauth.login()
    other = api.create("42")
    body = oauth.tokens()
    services.worker.run_once()
    events.drain()
    response = oauth.client.get("/logout", query_string={"id_token_hint": body["id_token"]})
    assert response.status_code == 200 and response.get_json() == {"logged_out": True}
    assert f"{COOKIE_NAME}=;" in response.headers["Set-Cookie"]
    assert validate(api, session) is False
    assert validate(api, other) is True  # never more than that session
    assert oauth.refresh(body["refresh_token"]).get_json()["error"] == "invalid_grant"
    services.worker.run_once()
    (event,) = events.drain()
    assert event["type"] == "session-invalidated" and event["session_id_hashes"] == [session["session_id_hash"]]


def test_redirects_with_state_to_allowed_uri(oauth):
    oauth.login()
    body = oauth.tokens()
    response = oauth.client.get(
        "/logout",
        query_string={
            "id_token_hint": body["id_token"],
            "post_logout_redirect_uri": "http://app.test/bye",
            "state": "s1",
        },
    )
    assert response.status_code == 303
    parts = urlsplit(response.headers["Location"])
    assert (parts.netloc, parts.path) == ("app.test", "/bye") and parse_qs(parts.query) == {"state": ["s1"]}


@pytest.mark.parametrize("uri", ["http://app.test/bye#done", "http://app.test/bye?x=1#done"])
def test_state_goes_into_the_query_before_a_fragment(oauth, uri):
    """The RP reads state from the query (RP-Initiated Logout 1.0 §3), not from inside its fragment."""
    response = oauth.client.get("/logout", query_string={"post_logout_redirect_uri": uri, "state": "s1"})
    assert response.status_code == 303
    parts = urlsplit(response.headers["Location"])
    assert parts.fragment == "done" and parse_qs(parts.query)["state"] == ["s1"]
    assert parse_qs(parts.query).get("x") == parse_qs(urlsplit(uri).query).get("x")


def test_exact_allowed_redirect_uri_is_followed(oauth):
    response = oauth.client.get("/logout", query_string={"post_logout_redirect_uri": "http://app.test/oauth/callback"})
    assert response.status_code == 303 and response.headers["Location"] == "http://app.test/oauth/callback"


@pytest.mark.parametrize(
    "uri",
    [
        "http://evil.test/bye",
        "https://app.test/bye",
        "http://app.test@evil.test/",
        "javascript:alert(1)",
        "//evil.test/",
    ],
)
def test_foreign_redirect_is_refused(oauth, uri):
    session = oauth.login()
    body = oauth.tokens()
    response = oauth.client.get(
        "/logout", query_string={"id_token_hint": body["id_token"], "post_logout_redirect_uri": uri}
    )
    assert response.status_code == 400 and "Location" not in response.headers
    assert response.get_json()["error"] == "invalid_request"
    assert validate(oauth.api, session) is True  # nothing done


def test_no_hint_does_nothing(oauth, api):
    """Without id_token_hint a GET (a link on any page) ends nothing."""
    session = oauth.login()
    response = oauth.client.get("/logout")
    assert response.status_code == 200 and response.get_json() == {"logged_out": False}
    assert "Set-Cookie" not in response.headers
    assert validate(api, session) is True


def test_hint_for_another_session_does_nothing(oauth, api):
    """A hint replayed into another browser (another cookie session) ends nothing."""
    oauth.login()
    body = oauth.tokens()
    victim = oauth.login()  # the browser now carries a different session
    response = oauth.client.get("/logout", query_string={"id_token_hint": body["id_token"]})
    assert response.get_json() == {"logged_out": False}
    assert validate(api, victim) is True


def test_replayed_hint_after_logout_does_nothing(oauth, api):
    oauth.login()
    body = oauth.tokens()
    assert oauth.client.get("/logout", query_string={"id_token_hint": body["id_token"]}).get_json()["logged_out"]
    later = oauth.login()
    assert oauth.client.get("/logout", query_string={"id_token_hint": body["id_token"]}).get_json() == {
        "logged_out": False
    }
    assert validate(api, later) is True


def test_expired_hint_still_works(oauth, api, clock, settings):
    """RP-Initiated Logout §2: an expired id token is an acceptable hint."""
    session = oauth.login()
    body = oauth.tokens()
    clock.advance(settings.access_token_ttl + 10)
    assert oauth.client.get("/logout", query_string={"id_token_hint": body["id_token"]}).get_json()["logged_out"]
    assert validate(api, session) is False


@pytest.mark.parametrize("hint_kind", ["access_token", "garbage", "tampered"])
def test_invalid_hint_is_refused(oauth, api, hint_kind):
    session = oauth.login()
    body = oauth.tokens()
    hint = {
        "access_token": body["access_token"],
        "garbage": "a.b.c",
        "tampered": body["id_token"][:-4] + ("AAAA" if not body["id_token"].endswith("AAAA") else "BBBB"),
    }[hint_kind]
    response = oauth.client.get("/logout", query_string={"id_token_hint": hint})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    assert validate(api, session) is True


def test_client_id_must_match_hint(oauth):
    oauth.login()
    body = oauth.tokens()
    response = oauth.client.get(
        "/logout", query_string={"id_token_hint": body["id_token"], "client_id": "fluxer-admin"}
    )
    assert response.status_code == 400


def test_hint_expired_by_the_wall_clock_still_works(oauth, api, services, key_pair):
    """An id token whose exp passed in real time (not just on the test clock) is an acceptable hint."""
    import time

    from tests.test_keys import rsa_sign

    session = oauth.login()
    now = int(time.time())
    claims = {"iss": "http://sso.test", "sub": "42", "aud": "fluxer", "iat": now - 7200, "exp": now - 3600,
              "auth_time": now - 7200, "sid": session["session_id_hash"]}  # fmt: skip
    hint = rsa_sign(key_pair[0], {"alg": "RS256", "typ": "JWT", "kid": services.keys.kid}, claims)
    response = oauth.client.get("/logout", query_string={"id_token_hint": hint})
    assert response.status_code == 200 and response.get_json() == {"logged_out": True}
    assert validate(api, session) is False
