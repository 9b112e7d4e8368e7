"""Bodies sent without a Content-Length (chunked) are held to the 64 KiB limit whole (sso/bodies.py).

Werkzeug's test client always sends a Content-Length, so these requests go to a
real gunicorn, which de-chunks the body as it does in production.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
import requests

from app import MAX_BODY_BYTES
from sso.cookies import COOKIE_NAME
from tests.conftest import REDIRECT_URI, SERVICE_SECRET, VERIFIER
from tests.server import GunicornServer, server_env

SERVICE = {"Authorization": f"Service {SERVICE_SECRET}"}
JSON = {**SERVICE, "Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ORIGIN = "http://app.test"


@pytest.fixture
def server(settings, redis) -> Iterator[GunicornServer]:
    srv = GunicornServer(server_env(settings), workers=1)
    srv.start()
    yield srv
    srv.stop()


def chunked(body: bytes, size: int = 8192) -> Iterator[bytes]:
    """The body in chunks: requests sends a generator with Transfer-Encoding: chunked, no Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def post(server: GunicornServer, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{server.url}{path}", data=chunked(body), headers=headers, timeout=10)


def padded_json(document: dict[str, str], length: int) -> bytes:
    """A JSON object exactly ``length`` bytes long (trailing whitespace is valid JSON)."""
    body = json.dumps(document).encode()
    return body + b" " * (length - len(body))


def padded_form(form: str, length: int) -> bytes:
    """A form exactly ``length`` bytes long: an unknown parameter, which the views ignore, fills it."""
    body = f"{form}&pad=".encode()
    return body + b"x" * (length - len(body))


def assert_too_large(response: requests.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.json() == {"error": "invalid_request", "error_description": "The request body is too large."}
    assert response.headers["Cache-Control"] == "no-store"


def test_an_oversized_chunked_json_body_is_refused_not_truncated(server, client):
    """Valid JSON in the first 64 KiB and junk after it: 413, and no session is created."""
    body = b'{"user_id": "42"}' + b" " * 70_000 + b"not json"
    assert_too_large(post(server, "/session/create", body, JSON))
    assert_too_large(post(server, "/session/create", padded_json({"user_id": "42"}, 200_000), JSON))
    assert client.get("/session/list/42", headers=SERVICE).get_json() == {"sessions": []}


def test_an_oversized_chunked_form_revokes_nothing(server, oauth, client):
    """A /revoke form whose first 64 KiB name a token is refused whole: the token stays active."""
    oauth.login("42")
    token = oauth.tokens()["refresh_token"]
    form = padded_form(f"token={token}&client_id=fluxer", 70_000) + b"&token=second"
    response = post(server, "/revoke", form, {**FORM, "Origin": ORIGIN})
    assert_too_large(response)
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # the route's CORS, as for any error
    introspected = client.post("/introspect", data={"token": token}, headers=SERVICE)
    assert introspected.get_json()["active"] is True


def test_oversized_chunked_bodies_on_the_fast_routes_get_the_views_413(server, oauth):
    """/session/validate, /introspect, /token and GET /authorize answer 413, with /token's CORS."""
    session = oauth.login("42")
    validate = padded_json({"token_hash": session["session_id_hash"]}, MAX_BODY_BYTES + 1)
    assert_too_large(post(server, "/session/validate", validate, JSON))
    assert_too_large(post(server, "/introspect", padded_form("token=x", MAX_BODY_BYTES + 1), {**SERVICE, **FORM}))
    code_form = f"grant_type=authorization_code&code={oauth.code()}&redirect_uri={REDIRECT_URI}"
    code_form += f"&code_verifier={VERIFIER}&client_id=fluxer"
    token = post(server, "/token", padded_form(code_form, 70_000), {**FORM, "Origin": ORIGIN})
    assert_too_large(token)
    assert token.headers["Access-Control-Allow-Origin"] == ORIGIN and token.headers["Vary"] == "Origin"
    cookie = oauth.client.get_cookie(COOKIE_NAME, domain="localhost")
    assert cookie is not None
    authorize = requests.get(
        f"{server.url}/authorize",
        params=oauth.authorize_params(),
        data=chunked(b"x" * 70_000),
        headers={"Cookie": f"{COOKIE_NAME}={cookie.value}"},
        allow_redirects=False,
        timeout=10,
    )
    assert_too_large(authorize)
    userinfo = requests.get(f"{server.url}/userinfo", data=chunked(b"x" * 70_000), timeout=10)  # never read
    assert_too_large(userinfo)


def test_chunked_bodies_at_the_limit_are_answered_as_before(server, api, oauth, client):
    """Exactly 64 KiB, in chunks, is served: a validation (fast path), a session and a revocation."""
    session = api.create("42")
    validate = post(server, "/session/validate", padded_json({"token_hash": session["session_id_hash"]}, 65536), JSON)
    assert validate.status_code == 200, validate.text
    assert validate.json()["valid"] is True and validate.json()["session"]["user_id"] == "42"
    created = post(server, "/session/create", padded_json({"user_id": "43"}, MAX_BODY_BYTES), JSON)
    assert created.status_code == 201, created.text
    oauth.login("42")
    token = oauth.tokens()["refresh_token"]
    revoked = post(server, "/revoke", padded_form(f"token={token}&client_id=fluxer", MAX_BODY_BYTES), FORM)
    assert revoked.status_code == 200, revoked.text
    assert client.post("/introspect", data={"token": token}, headers=SERVICE).get_json()["active"] is False
    repeated = post(server, "/revoke", padded_form(f"token={token}&client_id=fluxer&token=x", 1000), FORM)
    assert repeated.status_code == 400 and repeated.json()["error_description"] == "token: parameter repeated"


def test_a_malformed_chunk_is_a_json_400(server):
    """A chunk size that is not hex is Werkzeug's 400 as before, as JSON, and acts on nothing."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /session/create HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + f"Authorization: Service {SERVICE_SECRET}\r\n".encode()
            + b'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n{"user_id": "42"}\r\nzz\r\n'
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert json.loads(body)["error"] == "invalid_request"
