"""Inputs that once produced a 500 or were wrongly accepted: each now gets a clear 4xx."""

from __future__ import annotations

import base64
import json

import pytest


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def deep_header_token() -> str:
    """A JWT whose header is JSON nested thousands deep but still under the size limit."""
    return f"{b64(b'[' * 3000)}.{b64(b'{}')}.{b64(b'x')}"


def test_deeply_nested_json_body_is_invalid_request(client, service_headers):
    for path, headers in (("/session/create", service_headers), ("/session/set-cookie", {})):
        response = client.post(path, data="[" * 50_000, headers=headers, content_type="application/json")
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"


def test_deeply_nested_jwt_header_is_just_an_invalid_token(client, api, oauth):
    """userinfo 401, introspect inactive, revoke 200, logout hint 400: never a 500."""
    token = deep_header_token()
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    intro = client.post("/introspect", data={"token": token}, headers=api.headers)
    assert intro.status_code == 200 and intro.get_json() == {"active": False}
    assert client.post("/revoke", data={"token": token, "client_id": "fluxer"}).status_code == 200
    oauth.login()
    assert client.get("/logout", query_string={"id_token_hint": token}).status_code == 400


@pytest.mark.parametrize(
    "uri", ["http://app.test/bye\r\nSet-Cookie: x=1", "http://app.test/bye\nx", "http://app.test/ b"]
)
def test_control_characters_in_post_logout_redirect_uri(client, uri):
    response = client.get("/logout", query_string={"post_logout_redirect_uri": uri})
    assert response.status_code == 400 and "Location" not in response.headers
    assert response.get_json()["error_description"].startswith("post_logout_redirect_uri")


@pytest.mark.parametrize("field", ["user_agent", "platform"])
def test_lone_surrogates_are_refused(client, service_headers, field):
    body = '{"user_id": "42", "FIELD": "\\ud800"}'.replace("FIELD", field)
    response = client.post("/session/create", data=body, headers=service_headers, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error_description"].startswith(field)


def test_nul_characters_are_refused(client, service_headers):
    response = client.post("/session/create", json={"user_id": "42", "platform": "we\u0000b"}, headers=service_headers)
    assert response.status_code == 400 and response.get_json()["error_description"].startswith("platform")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_claims_are_refused(client, service_headers, literal):
    """They would come back out of /session/validate and /userinfo as invalid JSON."""
    body = '{"user_id": "42", "claims": {"n": LITERAL}}'.replace("LITERAL", literal)
    response = client.post("/session/create", data=body, headers=service_headers, content_type="application/json")
    assert response.status_code == 400 and response.get_json()["error_description"].startswith("claims")


@pytest.mark.parametrize("user_id", ["ab\n", "ab\r", "ab "])
def test_user_id_with_trailing_whitespace_is_refused(client, service_headers, user_id):
    response = client.post("/session/create", json={"user_id": user_id}, headers=service_headers)
    assert response.status_code == 400
    assert client.get("/session/list/ab%0A", headers=service_headers).status_code == 400


def test_token_hash_with_trailing_newline_is_refused(client, service_headers):
    response = client.post("/session/validate", json={"token_hash": "a" * 43 + "\n"}, headers=service_headers)
    assert response.status_code == 400


def test_validate_output_is_strict_json(client, api):
    """Whatever claims were stored, the answer parses with a strict JSON parser."""
    body = api.create("42", claims={"name": "Ada \u00e9\u4e2d", "n": 1.5, "ok": True, "none": None})
    response = client.post("/session/validate", json={"token_hash": body["session_id_hash"]}, headers=api.headers)

    def refuse(name: str) -> None:
        raise ValueError(name)

    parsed = json.loads(response.get_data(as_text=True), parse_constant=refuse)
    assert parsed["session"]["claims"]["name"] == "Ada \u00e9\u4e2d"
