"""Every error is JSON: framework errors, bad bodies, Redis down."""

from __future__ import annotations

import pytest

from app import create_app
from tests.redis_server import RedisServer, has_redis_server


def assert_json_error(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == code and body["error_description"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_unknown_path_is_json_404(client):
    assert_json_error(client.get("/nope"), 404, "not_found")


def test_wrong_method_is_json_405_with_allow(client, service_headers):
    response = client.get("/session/create", headers=service_headers)
    assert_json_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_oversized_body_is_json_413(client, service_headers):
    response = client.post(
        "/session/create",
        data=b"{" + b" " * 70_000 + b"}",
        headers={**service_headers, "Content-Type": "application/json"},
    )
    assert_json_error(response, 413, "invalid_request")


def test_wrong_content_type_is_json_415(client, service_headers):
    response = client.post(
        "/session/create",
        data="user_id=1",
        headers={**service_headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_json_error(response, 415, "invalid_request")


@pytest.mark.parametrize("payload", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"null"])
def test_malformed_json_is_invalid_request(client, service_headers, payload):
    response = client.post(
        "/session/create", data=payload, headers={**service_headers, "Content-Type": "application/json"}
    )
    assert_json_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "payload",
    [
        "[" * 1000 + "]" * 1000,
        '{"a":' * 1000 + "1" + "}" * 1000,
        '{"user_id": "1", "claims": ' + '{"a":' * 990 + "1" + "}" * 990 + "}",
        '{"user_id": "1", "claims": {"a": ' + "[" * 990 + "]" * 990 + "}}",
    ],
    ids=["array", "object", "claims-object", "claims-array"],
)
def test_deeply_nested_json_is_invalid_request(client, service_headers, payload):
    """JSON nested 1000 deep overflows Python's parser: a 400, not a 500 (found by the hostile-input tests)."""
    response = client.post(
        "/session/create", data=payload, headers={**service_headers, "Content-Type": "application/json"}
    )
    assert_json_error(response, 400, "invalid_request")


def test_health_ok(client):
    response = client.get("/_health")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


@pytest.mark.skipif(not has_redis_server(), reason="needs the redis-server binary to stop and restart Redis")
def test_redis_down_answers_503_fast_and_recovers(settings, clock, service_headers):
    """With Redis stopped: 503 JSON within ~2 s; restarted: the same app works again."""
    import dataclasses
    import time

    server = RedisServer()
    server.start()
    try:
        app = create_app(dataclasses.replace(settings, redis_url=server.url), clock=clock)
        client = app.test_client()
        assert client.post("/session/create", json={"user_id": "1"}, headers=service_headers).status_code == 201
        server.stop()
        started = time.monotonic()
        response = client.post("/session/create", json={"user_id": "1"}, headers=service_headers)
        assert time.monotonic() - started < 2.5
        assert_json_error(response, 503, "temporarily_unavailable")
        validate = client.post("/session/validate", json={"token_hash": "A" * 43}, headers=service_headers)
        assert_json_error(validate, 503, "temporarily_unavailable")
        health = client.get("/_health")
        assert health.status_code == 503 and health.get_json()["status"] == "unavailable"
        server.start()
        assert client.get("/_health").status_code == 200
        created = client.post("/session/create", json={"user_id": "1"}, headers=service_headers)
        assert created.status_code == 201
        token_hash = created.get_json()["session_id_hash"]
        assert (
            client.post("/session/validate", json={"token_hash": token_hash}, headers=service_headers).get_json()[
                "valid"
            ]
            is True
        )
    finally:
        server.cleanup()


@pytest.mark.parametrize("path", ["/token", "/revoke"])
def test_client_that_authenticated_with_basic_gets_a_challenge(oauth, path):
    """RFC 6749 §5.2: invalid_client for a client that used the Authorization header is a 401 with
    WWW-Authenticate; a public client that sent only client_id gets no challenge."""
    form = {"grant_type": "refresh_token", "refresh_token": "x", "token": "x"}
    basic = oauth.client.post(path, data=form, headers={"Authorization": "Basic Zmx1eGVyOg=="})
    assert_json_error(basic, 401, "invalid_client")
    assert basic.headers["WWW-Authenticate"] == 'Basic realm="fluxer-sso"'
    plain = oauth.client.post(path, data={**form, "client_id": "nobody"})
    assert_json_error(plain, 401, "invalid_client")
    assert "WWW-Authenticate" not in plain.headers


def test_refresh_with_an_empty_scope_keeps_the_grant(oauth):
    """RFC 6749 §3.2: scope= without a value is the same as no scope parameter."""
    oauth.login()
    first = oauth.tokens(scope="openid profile")
    again = oauth.refresh(first["refresh_token"], scope="")
    assert again.status_code == 200 and again.get_json()["scope"] == "openid profile"


@pytest.mark.parametrize("path", ["/token", "/session/set-cookie", "/.well-known/jwks.json", "/_health", "/authorize"])
def test_an_options_answer_has_no_body_and_no_html_type(client, path):
    response = client.options(path, headers={"Origin": "http://app.test", "Access-Control-Request-Method": "POST"})
    assert response.status_code == 200 and response.data == b""
    assert "Content-Type" not in response.headers and response.headers["Allow"]
