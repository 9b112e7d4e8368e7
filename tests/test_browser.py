"""The browser-facing endpoints: /session/set-cookie and POST /logout."""

from __future__ import annotations

import pytest

from sso.cookies import COOKIE_NAME

APP = "http://app.test"


def cookie_header(response) -> str:
    (header,) = [v for k, v in response.headers.items() if k == "Set-Cookie"]
    return header


def test_set_cookie_sets_the_sso_cookie(api, client, services):
    """A valid token gets 204 and an HttpOnly, Lax, Secure cookie for its remaining life."""
    body = api.create("42")
    response = client.post("/session/set-cookie", json={"token": body["token"]}, headers={"Origin": APP})
    assert response.status_code == 204 and response.data == b"" and "Content-Type" not in response.headers
    header = cookie_header(response)
    assert header.startswith(f"{COOKIE_NAME}={body['token']};")
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header and "Secure" in header
    assert f"Max-Age={services.settings.session_ttl}" in header
    assert "Domain" not in header
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.parametrize("settings_overrides", [{"cookie_domain": "fluxer.test", "cookie_secure": False}])
def test_set_cookie_honours_domain_and_secure_settings(api, client):
    """SSO_COOKIE_DOMAIN and SSO_COOKIE_SECURE shape the cookie; a host-only one left from before is expired."""
    body = api.create("42")
    response = client.post("/session/set-cookie", json={"token": body["token"]})
    leftover, header = response.headers.getlist("Set-Cookie")
    assert header.startswith(f"{COOKIE_NAME}={body['token']};")
    assert "Domain=fluxer.test" in header and "Secure" not in header
    assert leftover.startswith(f"{COOKIE_NAME}=;") and "Max-Age=0" in leftover and "Domain" not in leftover


def test_set_cookie_max_age_is_remaining_life(api, client, clock):
    body = api.create("42")
    clock.advance(1000)
    header = cookie_header(client.post("/session/set-cookie", json={"token": body["token"]}))
    assert "Max-Age=2591000" in header


@pytest.mark.parametrize("token", ["not-a-session", "x" * 100])
def test_set_cookie_rejects_unknown_token(client, token):
    """An invalid token gets 401 JSON and no cookie."""
    response = client.post("/session/set-cookie", json={"token": token}, headers={"Origin": APP})
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("origin", ["http://evil.test", "null", "http://app.test.evil.test"])
def test_set_cookie_refuses_foreign_origins(api, client, origin):
    """Login CSRF: a page elsewhere cannot plant a session (even a valid one) in the browser."""
    body = api.create("42")
    response = client.post("/session/set-cookie", json={"token": body["token"]}, headers={"Origin": origin})
    assert response.status_code == 403 and response.get_json()["error"] == "access_denied"
    assert "Set-Cookie" not in response.headers


def test_set_cookie_refuses_a_cross_site_form_post(api, client):
    """A form can POST text/plain without a preflight: refused by content type, no cookie set."""
    body = api.create("42")
    response = client.post("/session/set-cookie", data=f'{{"token": "{body["token"]}"}}', content_type="text/plain")
    assert response.status_code == 415 and "Set-Cookie" not in response.headers


def test_set_cookie_preflight_allows_only_app_origins(client):
    """The CORS preflight names app origins, with credentials, and nobody else."""
    ok = client.options(
        "/session/set-cookie",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == APP
    assert ok.headers["Access-Control-Allow-Credentials"] == "true"
    assert "POST" in ok.headers["Access-Control-Allow-Methods"]
    evil = client.options(
        "/session/set-cookie", headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_logout_clears_cookie_and_keeps_session_by_default(api, client):
    """POST /logout from an app origin clears the cookie only."""
    body = api.create("42")
    client.set_cookie(COOKIE_NAME, body["token"], domain="localhost")
    response = client.post("/logout", headers={"Origin": APP})
    assert response.status_code == 204 and "Content-Type" not in response.headers  # no answer is HTML
    header = cookie_header(response)
    assert header.startswith(f"{COOKIE_NAME}=;") and "Max-Age=0" in header
    assert api.post("/session/validate", {"token_hash": body["session_id_hash"]}).get_json()["valid"] is True


def test_logout_invalidate_session_ends_it_and_publishes(api, client, services, events):
    body = api.create("42")
    other = api.create("42")
    services.worker.run_once()
    events.drain()
    client.set_cookie(COOKIE_NAME, body["token"], domain="localhost")
    response = client.post("/logout", data={"invalidate": "session"}, headers={"Origin": APP})
    assert response.status_code == 204
    assert api.post("/session/validate", {"token_hash": body["session_id_hash"]}).get_json() == {"valid": False}
    assert api.post("/session/validate", {"token_hash": other["session_id_hash"]}).get_json()["valid"] is True
    services.worker.run_once()
    (event,) = events.drain()
    assert event == {**event, "type": "session-invalidated", "session_id_hashes": [body["session_id_hash"]]}


def test_logout_invalidate_all_ends_every_session(api, client, services, events):
    body = api.create("42")
    other = api.create("42")
    survivor = api.create("43")
    services.worker.run_once()
    events.drain()
    client.set_cookie(COOKIE_NAME, body["token"], domain="localhost")
    response = client.post("/logout?invalidate=all", headers={"Origin": APP})
    assert response.status_code == 204
    for s in (body, other):
        assert api.post("/session/validate", {"token_hash": s["session_id_hash"]}).get_json() == {"valid": False}
    assert api.post("/session/validate", {"token_hash": survivor["session_id_hash"]}).get_json()["valid"] is True
    services.worker.run_once()
    (event,) = events.drain()
    assert event["type"] == "global-logout" and event["user_id"] == "42"


@pytest.mark.parametrize("invalidate", ["session", "all"])
def test_refresh_after_logout_fails(oauth, api, invalidate):
    """Logging out with invalidate=session|all kills the session's refresh families and access tokens at once."""
    oauth.login()
    body = oauth.tokens()
    response = oauth.client.post("/logout", data={"invalidate": invalidate}, headers={"Origin": APP})
    assert response.status_code == 204
    assert oauth.refresh(body["refresh_token"]).get_json()["error"] == "invalid_grant"
    intro = api.client.post("/introspect", data={"token": body["access_token"]}, headers=api.headers)
    assert intro.get_json() == {"active": False}
    userinfo = oauth.client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert userinfo.status_code == 401


@pytest.mark.parametrize(
    "headers", [{"Origin": "http://evil.test"}, {}, {"Origin": "null"}, {"Referer": "http://evil.test/page"}]
)
def test_logout_refuses_foreign_origins(api, client, headers):
    """A cross-site or origin-less POST cannot log a user out (logout CSRF)."""
    body = api.create("42")
    client.set_cookie(COOKIE_NAME, body["token"], domain="localhost")
    response = client.post("/logout", data={"invalidate": "all"}, headers=headers)
    assert response.status_code == 403
    assert response.get_json()["error"] == "access_denied"
    assert "Set-Cookie" not in response.headers
    assert api.post("/session/validate", {"token_hash": body["session_id_hash"]}).get_json()["valid"] is True


def test_logout_accepts_same_origin_and_referer(client):
    """The issuer's own origin (or a Referer from an app) is accepted."""
    assert client.post("/logout", headers={"Origin": "http://sso.test"}).status_code == 204
    assert client.post("/logout", headers={"Referer": "http://admin.test/settings"}).status_code == 204


def test_logout_rejects_unknown_invalidate_value(client):
    response = client.post("/logout", data={"invalidate": "everyone"}, headers={"Origin": APP})
    assert response.status_code == 400 and response.get_json()["error_description"].startswith("invalidate")


def test_post_logout_follows_an_allowed_redirect_with_state(api, client):
    """RP-Initiated Logout 1.0 §2 allows POST: an allowed post_logout_redirect_uri is a 303 with state."""
    from urllib.parse import parse_qs, urlsplit

    body = api.create("42")
    client.set_cookie(COOKIE_NAME, body["token"], domain="localhost")
    form = {"invalidate": "session", "post_logout_redirect_uri": "http://app.test/bye", "state": "s-1"}
    response = client.post("/logout", data=form, headers={"Origin": APP})
    assert response.status_code == 303
    parts = urlsplit(response.headers["Location"])
    assert (parts.netloc, parts.path, parse_qs(parts.query)) == ("app.test", "/bye", {"state": ["s-1"]})
    assert cookie_header(response).startswith(f"{COOKIE_NAME}=;")
    assert response.headers["Cache-Control"] == "no-store"
    assert api.post("/session/validate", {"token_hash": body["session_id_hash"]}).get_json() == {"valid": False}
    plain = client.post("/logout", data={"post_logout_redirect_uri": "http://app.test/oauth/callback"},
                        headers={"Origin": APP})  # fmt: skip
    assert plain.status_code == 303 and plain.headers["Location"] == "http://app.test/oauth/callback"


@pytest.mark.parametrize("uri", ["http://evil.test/bye", "https://app.test/bye", "http://app.test@evil.test/"])
def test_post_logout_refuses_a_foreign_redirect_before_acting(api, client, uri):
    """A redirect URI that is not allowed is 400 and nothing happens: no redirect, the cookie and session stay."""
    body = api.create("42")
    client.set_cookie(COOKIE_NAME, body["token"], domain="localhost")
    form = {"invalidate": "all", "post_logout_redirect_uri": uri}
    response = client.post("/logout", data=form, headers={"Origin": APP})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    assert "Location" not in response.headers and "Set-Cookie" not in response.headers
    assert api.post("/session/validate", {"token_hash": body["session_id_hash"]}).get_json()["valid"] is True


@pytest.fixture
def raw_client(app):
    """A client without a cookie jar, so the Cookie header the test writes is the one the app reads."""
    return app.test_client(use_cookies=False)


def two_sso_cookies(first: str, second: str) -> dict[str, str]:
    """The Cookie header a browser sends when a sibling subdomain planted a second SSO cookie (its path first)."""
    return {"Cookie": f"{COOKIE_NAME}={first}; {COOKIE_NAME}={second}"}


def test_two_sso_cookies_are_trusted_at_authorize_in_neither_order(oauth, api, raw_client):
    """A planted second cookie (the planter's live session) gets no code for either session: login instead."""
    victim = api.create("42")
    planter = api.create("666")
    for pair in ((planter["token"], victim["token"]), (victim["token"], planter["token"])):
        response = raw_client.get("/authorize", query_string=oauth.authorize_params(), headers=two_sso_cookies(*pair))
        assert response.status_code == 302
        assert response.headers["Location"].startswith("http://app.test/login"), response.headers["Location"]
    single = raw_client.get("/authorize", query_string=oauth.authorize_params(),
                        headers={"Cookie": f"{COOKIE_NAME}={victim['token']}"})  # fmt: skip
    assert "code=" in single.headers["Location"]


def test_two_sso_cookies_end_no_session_at_logout(api, raw_client):
    """POST /logout with two SSO cookies ends neither session (it still clears ours)."""
    victim = api.create("42")
    planter = api.create("666")
    headers = {**two_sso_cookies(planter["token"], victim["token"]), "Origin": APP}
    assert raw_client.post("/logout", data={"invalidate": "all"}, headers=headers).status_code == 204
    for s in (victim, planter):
        assert api.post("/session/validate", {"token_hash": s["session_id_hash"]}).get_json()["valid"] is True
