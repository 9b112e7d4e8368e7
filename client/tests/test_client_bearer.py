"""require_token (Flask) and BearerMiddleware (WSGI) answer RFC 6750 errors as JSON."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, jsonify
from fluxer_sso_client import TokenVerifier
from fluxer_sso_client.errors import VerificationUnavailable
from fluxer_sso_client.flask import current_token, require_token
from fluxer_sso_client.middleware import ENVIRON_KEY, BearerMiddleware
from local_tokens import Clock, mint
from werkzeug.test import Client


def flask_app(verifier: TokenVerifier) -> Client:
    app = Flask(__name__)

    @app.get("/me")
    @require_token(verifier, scope="profile")
    def me() -> Any:
        return jsonify(sub=current_token().sub)

    return app.test_client()


def wsgi_app(verifier: TokenVerifier) -> Client:
    def inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ.get(ENVIRON_KEY).sub.encode() if ENVIRON_KEY in environ else b"public"]

    return Client(BearerMiddleware(inner, verifier, scope="profile", public=["/_health"]))


@pytest.fixture(params=["flask", "wsgi"])
def client(request: pytest.FixtureRequest, local: TokenVerifier) -> Client:
    return flask_app(local) if request.param == "flask" else wsgi_app(local)


def test_a_valid_token_passes(client: Client, clock: Clock) -> None:
    """The token's subject reaches the view."""
    response = client.get("/me", headers={"Authorization": f"Bearer {mint(clock)}"})
    assert response.status_code == 200 and b"42" in response.data


def test_no_credentials_get_a_bare_challenge(client: Client) -> None:
    """RFC 6750 §3.1: without credentials, 401 and a challenge with no error code."""
    response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer a b", "Bearer tok\u00e9n"])
def test_a_malformed_header_is_invalid_request(client: Client, header: str) -> None:
    """400 invalid_request for anything that is not 'Bearer <b64token>'."""
    response = client.get("/me", headers={"Authorization": header})
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["WWW-Authenticate"]


def test_a_refused_token_is_invalid_token(client: Client, clock: Clock) -> None:
    """401 invalid_token with a description, in the header and the JSON body."""
    response = client.get("/me", headers={"Authorization": f"Bearer {mint(clock, aud='other')}"})
    assert response.status_code == 401
    assert 'error="invalid_token", error_description="wrong audience"' in response.headers["WWW-Authenticate"]
    assert response.get_json() == {"error": "invalid_token", "error_description": "wrong audience"}
    assert response.headers["Cache-Control"] == "no-store"


def test_a_missing_scope_is_insufficient_scope(client: Client, clock: Clock) -> None:
    """403 insufficient_scope naming the scope the route needs."""
    response = client.get("/me", headers={"Authorization": f"Bearer {mint(clock, scope='openid')}"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert 'scope="profile"' in response.headers["WWW-Authenticate"]


def test_unavailable_verification_is_a_503_with_retry_after(client: Client, local: TokenVerifier, clock) -> None:
    """The outage policy's strict mode: 503 temporarily_unavailable, never a 401 that logs users out."""

    def blind() -> None:
        raise VerificationUnavailable("session events unavailable for 90s")

    local.health = blind
    response = client.get("/me", headers={"Authorization": f"Bearer {mint(clock)}"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert response.get_json()["error"] == "temporarily_unavailable"


def test_public_paths_skip_the_middleware(local: TokenVerifier) -> None:
    """BearerMiddleware lets the listed paths through without a token."""
    assert wsgi_app(local).get("/_health").data == b"public"
