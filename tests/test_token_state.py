"""/userinfo (OIDC Core §5.3), /introspect (RFC 7662) and /revoke (RFC 7009)."""

from __future__ import annotations

import pytest

from tests.test_keys import rsa_sign

pytestmark = pytest.mark.topologies


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def introspect(api, token: str, **extra) -> dict:
    response = api.client.post("/introspect", data={"token": token, **extra}, headers=api.headers)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    return response.get_json()


# -- userinfo ----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "post"])
def test_userinfo_releases_claims_by_scope(oauth, method):
    oauth.login(claims={"name": "Ada", "email": "ada@example.com", "email_verified": True, "secret_flag": 1})
    body = oauth.tokens()
    response = getattr(oauth.client, method)("/userinfo", headers=bearer(body["access_token"]))
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {"sub": "42", "name": "Ada", "email": "ada@example.com", "email_verified": True}


def test_userinfo_without_email_scope_hides_email(oauth):
    oauth.login()
    body = oauth.tokens(scope="openid profile")
    assert oauth.client.get("/userinfo", headers=bearer(body["access_token"])).get_json() == {
        "sub": "42",
        "name": "Ada",
    }


def test_userinfo_needs_openid_scope(oauth):
    oauth.login()
    body = oauth.tokens(scope="profile")
    response = oauth.client.get("/userinfo", headers=bearer(body["access_token"]))
    assert response.status_code == 403 and response.get_json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic abc"}], ids=["none", "basic"])
def test_userinfo_without_bearer_credentials_gets_a_bare_challenge(client, headers):
    """RFC 6750 §3.1: no Bearer credentials at all, so the challenge names no error."""
    response = client.get("/userinfo", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="fluxer-sso"'


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer garbage"},
        {"Authorization": "Bearer a.b.c"},
        {"Authorization": "Bearer " + "a" * 100_000},
        {"Authorization": "Bearer " + ("e30." * 3000)[:-1]},
    ],
    ids=["empty", "garbage", "three-dots", "oversized", "oversized-jws-shape"],
)
def test_userinfo_rejects_missing_or_bad_tokens(client, headers):
    response = client.get("/userinfo", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_userinfo_rejects_expired_revoked_and_ended(oauth, api, clock, settings):
    """Expired, revoked, or whose session has ended: 401 invalid_token each time."""
    session = oauth.login()
    a, b = oauth.tokens(), oauth.tokens()
    oauth.client.post("/revoke", data={"token": a["access_token"], "client_id": "fluxer"})
    assert oauth.client.get("/userinfo", headers=bearer(a["access_token"])).status_code == 401
    assert oauth.client.get("/userinfo", headers=bearer(b["access_token"])).status_code == 200
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [session["session_id_hash"]]})
    assert oauth.client.get("/userinfo", headers=bearer(b["access_token"])).status_code == 401
    oauth.login()
    c = oauth.tokens()
    assert oauth.client.get("/userinfo", headers=bearer(c["access_token"])).status_code == 200
    clock.advance(settings.access_token_ttl)
    response = oauth.client.get("/userinfo", headers=bearer(c["access_token"]))
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_token"


def test_userinfo_rejects_really_expired_token(oauth, key_pair, services):
    """A token whose exp has passed (by the wall clock) is invalid_token."""
    import time

    oauth.login()
    claims = {
        "iss": "http://sso.test",
        "sub": "42",
        "aud": "fluxer-api",
        "client_id": "fluxer",
        "scope": "openid",
        "sid": "x" * 43,
        "iat": int(time.time()) - 100,
        "exp": int(time.time()) - 1,
        "jti": "j",
    }
    token = rsa_sign(key_pair[0], {"alg": "RS256", "typ": "at+jwt", "kid": services.keys.kid}, claims)
    assert oauth.client.get("/userinfo", headers=bearer(token)).status_code == 401


def test_userinfo_rejects_id_token_as_access_token(oauth):
    oauth.login()
    body = oauth.tokens()
    assert oauth.client.get("/userinfo", headers=bearer(body["id_token"])).status_code == 401


def test_userinfo_cors(oauth):
    response = oauth.client.get("/userinfo", headers={"Origin": "http://admin.test"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://admin.test"


# -- introspection ------------------------------------------------------------------


def test_introspect_access_token(oauth, api):
    session = oauth.login()
    body = oauth.tokens()
    result = introspect(api, body["access_token"])
    assert result["active"] is True and result["token_type"] == "Bearer"
    assert result["sub"] == "42" and result["client_id"] == "fluxer" and result["scope"] == "openid profile email"
    assert result["sid"] == session["session_id_hash"] and result["iss"] == "http://sso.test"
    assert result["exp"] > result["iat"]
    assert introspect(api, body["access_token"], token_type_hint="refresh_token")["active"] is True


def test_introspect_refresh_token(oauth, api):
    session = oauth.login()
    body = oauth.tokens()
    result = introspect(api, body["refresh_token"], token_type_hint="refresh_token")
    assert result["active"] is True and result["token_type"] == "refresh_token"
    assert result["sub"] == "42" and result["client_id"] == "fluxer" and result["sid"] == session["session_id_hash"]
    assert result["exp"] > result["iat"] and result["iss"] == "http://sso.test"
    rotated = oauth.refresh(body["refresh_token"]).get_json()
    assert introspect(api, body["refresh_token"]) == {"active": False}  # spent
    assert introspect(api, rotated["refresh_token"])["active"] is True


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 5000, "eyJhbGciOiJub25lIn0.e30."])
def test_introspect_garbage_is_inactive(api, token):
    assert introspect(api, token) == {"active": False}


def test_introspect_ended_session_is_inactive(oauth, api):
    session = oauth.login()
    body = oauth.tokens()
    api.post("/session/invalidate-all", {"user_id": "42"})
    assert introspect(api, body["access_token"]) == {"active": False}
    assert introspect(api, body["refresh_token"]) == {"active": False}
    assert session


def test_introspect_requires_service_auth(oauth, client):
    oauth.login()
    body = oauth.tokens()
    response = client.post("/introspect", data={"token": body["access_token"]})
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"
    response = client.post("/introspect", data={"token": body["access_token"], "client_id": "fluxer"})
    assert response.status_code == 401


def test_introspect_input_errors(api):
    response = api.client.post(
        "/introspect", data="", content_type="application/x-www-form-urlencoded", headers=api.headers
    )
    assert response.status_code == 400 and response.get_json()["error_description"].startswith("token")
    response = api.client.post("/introspect", data={"token": "x", "token_type_hint": "id_token"}, headers=api.headers)
    assert response.status_code == 400 and response.get_json()["error"] == "unsupported_token_type"


# -- revocation -----------------------------------------------------------------------


def test_revoke_refresh_token_revokes_family_and_its_access_tokens(oauth, api):
    oauth.login()
    first = oauth.tokens()
    second = oauth.refresh(first["refresh_token"]).get_json()
    response = oauth.client.post("/revoke", data={"token": second["refresh_token"], "client_id": "fluxer"})
    assert response.status_code == 200 and response.get_data() == b""
    assert oauth.refresh(second["refresh_token"]).get_json()["error"] == "invalid_grant"
    for token in (first["access_token"], second["access_token"]):
        assert introspect(api, token) == {"active": False}


def test_a_revoked_token_is_inactive_to_its_last_second_even_when_the_clock_ticks(oauth, api, services, clock):
    """Found in review: verification and the revocation check read the clock separately, so a token of
    an ended family (exp == the session's mark 'y') passed at the instant in between. One reading now."""
    oauth.login()
    body = oauth.tokens()
    assert oauth.client.post("/revoke", data={"token": body["refresh_token"], "client_id": "fluxer"}).status_code == 200
    exp = clock() + body["expires_in"]
    readings = iter([exp - 0.5, exp + 0.1, exp + 0.1])  # a tick between two readings would cross exp
    services.tokens.clock = lambda: next(readings)
    assert services.tokens.active_access_token(body["access_token"]) is None


def test_many_code_exchanges_on_one_session_never_refuse_and_revoke_exactly_the_ended(oauth, api, clock):
    """One browser signing in to a client again and again within an access-token lifetime: every exchange
    succeeds; the families the cap ended have their access tokens refused, the 32 live ones do not."""
    oauth.login()
    bodies = []
    for _ in range(40):
        bodies.append(oauth.tokens())
        clock.advance(1)
    active = [introspect(api, body["access_token"])["active"] for body in bodies]
    assert active == [False] * 8 + [True] * 32
    assert [oauth.client.get("/userinfo", headers=bearer(b["access_token"])).status_code for b in bodies[7:9]] == [
        401,
        200,
    ]
    assert oauth.refresh(bodies[7]["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert oauth.refresh(bodies[8]["refresh_token"]).status_code == 200


def test_revoke_access_token_by_jti(oauth, api):
    oauth.login()
    a, b = oauth.tokens(), oauth.tokens()
    assert (
        oauth.client.post(
            "/revoke", data={"token": a["access_token"], "client_id": "fluxer", "token_type_hint": "access_token"}
        ).status_code
        == 200
    )
    assert introspect(api, a["access_token"]) == {"active": False}
    assert introspect(api, b["access_token"])["active"] is True
    assert oauth.refresh(a["refresh_token"]).status_code == 200  # the grant itself lives on


def test_revoke_unknown_token_is_200(client):
    response = client.post("/revoke", data={"token": "nothing-like-it", "client_id": "fluxer"})
    assert response.status_code == 200 and response.data == b""
    assert "Content-Type" not in response.headers  # an empty answer, not an empty HTML page
    assert client.post("/revoke", data={"token": "a.b.c", "client_id": "fluxer"}).status_code == 200


def test_revoke_another_clients_token_is_200_and_no_op(oauth, api):
    """RFC 7009 §2.1: a client may revoke only its own tokens."""
    oauth.login()
    body = oauth.tokens()
    for token in (body["refresh_token"], body["access_token"]):
        response = oauth.client.post("/revoke", data={"token": token, "client_id": "fluxer-admin"})
        assert response.status_code == 200
    assert introspect(api, body["access_token"])["active"] is True
    assert oauth.refresh(body["refresh_token"]).status_code == 200


def test_revoke_with_service_auth_revokes_any_token(oauth, api):
    oauth.login()
    body = oauth.tokens()
    response = api.client.post("/revoke", data={"token": body["refresh_token"]}, headers=api.headers)
    assert response.status_code == 200
    assert oauth.refresh(body["refresh_token"]).get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    "data, headers, status, error",
    [
        ({"token": "x"}, {}, 401, "invalid_client"),
        ({"token": "x", "client_id": "nobody"}, {}, 401, "invalid_client"),
        (
            {"token": "x", "client_id": "fluxer"},
            {"Authorization": "Service wrong-wrong-wrong-wrong"},
            401,
            "invalid_client",
        ),
        ({"client_id": "fluxer"}, {}, 400, "invalid_request"),
        ({"token": "x", "client_id": "fluxer", "token_type_hint": "id_token"}, {}, 400, "unsupported_token_type"),
    ],
)
def test_revoke_errors(client, data, headers, status, error):
    response = client.post("/revoke", data=data, headers=headers)
    assert response.status_code == status and response.get_json()["error"] == error


def test_revoke_cors(client):
    response = client.post("/revoke", data={"token": "x", "client_id": "fluxer"}, headers={"Origin": "http://app.test"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://app.test"
