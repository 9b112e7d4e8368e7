"""Interoperability with code nobody here wrote: Authlib's OAuth 2.0 client and PyJWT's PyJWKClient,
against a real gunicorn + gevent server over HTTP."""

from __future__ import annotations

import jwt as pyjwt
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

from sso.cookies import COOKIE_NAME
from tests.conftest import REDIRECT_URI, SERVICE_SECRET
from tests.server import GunicornServer, LiveFlow, server_env


@pytest.fixture
def server(settings, redis):
    # The issuer must be where the server really is, so discovery URLs work for the clients.
    srv = GunicornServer({}, workers=2)
    srv.env.update(server_env(settings, SSO_ISSUER=f"http://127.0.0.1:{srv.port}"))
    srv.start()
    yield srv
    srv.stop()


def test_authlib_full_flow_and_pyjwt_verification(server):
    """Authlib runs authorize -> token -> refresh -> userinfo -> revoke; PyJWT verifies via the JWKS."""
    url = server.url
    meta = requests.get(f"{url}/.well-known/openid-configuration", timeout=5).json()
    assert meta["issuer"] == url
    cookie = LiveFlow(url, SERVICE_SECRET).login()

    client = OAuth2Session(
        client_id="fluxer", redirect_uri=REDIRECT_URI, scope="openid profile email",
        code_challenge_method="S256", token_endpoint_auth_method="none",
    )  # fmt: skip
    verifier = generate_token(64)
    authorization_url, state = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce="nonce-123"
    )
    browser = requests.get(authorization_url, cookies={COOKIE_NAME: cookie}, allow_redirects=False, timeout=5)
    assert browser.status_code == 302
    callback = browser.headers["Location"]
    assert callback.startswith(REDIRECT_URI) and f"state={state}" in callback and "iss=" in callback

    token = client.fetch_token(meta["token_endpoint"], authorization_response=callback, code_verifier=verifier)
    assert token["token_type"].lower() == "bearer" and "id_token" in token

    jwks = pyjwt.PyJWKClient(meta["jwks_uri"])
    access = token["access_token"]
    key = jwks.get_signing_key_from_jwt(access)
    claims = pyjwt.decode(access, key.key, algorithms=["RS256"], audience="fluxer-api", issuer=url,
                          options={"require": ["exp", "iat", "iss", "aud", "sub"]})  # fmt: skip
    assert claims["sub"] == "42" and claims["client_id"] == "fluxer"
    assert pyjwt.get_unverified_header(access)["typ"] == "at+jwt"
    id_claims = pyjwt.decode(token["id_token"], jwks.get_signing_key_from_jwt(token["id_token"]).key,
                             algorithms=["RS256"], audience="fluxer", issuer=url)  # fmt: skip
    assert id_claims["nonce"] == "nonce-123" and id_claims["sid"] == claims["sid"]

    userinfo = client.get(meta["userinfo_endpoint"], timeout=5)
    assert userinfo.status_code == 200
    assert userinfo.json() == {"sub": "42", "name": "Ada", "email": "ada@example.com"}

    refreshed = client.refresh_token(meta["token_endpoint"], refresh_token=token["refresh_token"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    new_claims = pyjwt.decode(refreshed["access_token"], key.key, algorithms=["RS256"], audience="fluxer-api",
                              issuer=url)  # fmt: skip
    assert new_claims["jti"] != claims["jti"]

    revoked = client.revoke_token(meta["revocation_endpoint"], token=refreshed["refresh_token"],
                                  token_type_hint="refresh_token")  # fmt: skip
    assert revoked.status_code == 200
    again = requests.post(
        meta["token_endpoint"],
        timeout=5,
        data={"grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"], "client_id": "fluxer"},
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    intro = requests.post(meta["introspection_endpoint"], data={"token": refreshed["access_token"]},
                          headers={"Authorization": f"Service {SERVICE_SECRET}"}, timeout=5)  # fmt: skip
    assert intro.json() == {"active": False}  # the family's access tokens went with it
