"""Every documented status of every operation, produced by the real app and checked against docs/openapi.json.

For each (method, path, status) the document lists there is one case below that
makes the app answer with it; the body must validate against the documented
schema (jsonschema_rs, JSON Schema 2020-12, the dialect of OpenAPI 3.1), every
header the document marks required must be there and match its schema, and the
document's own examples must validate too. A new documented status without a
case, or a case for an undocumented one, fails the first test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema_rs
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from config.settings import RateLimit
from sso.cookies import COOKIE_NAME
from sso.openapi import openapi_document
from sso.store.layout import RefreshToken, draw_session_token
from tests.conftest import CHALLENGE, REDIRECT_URI, SERVICE_SECRET, Api, OAuth, make_settings
from tests.redis_server import free_port

DOC = openapi_document()
SERVICE = {"Authorization": f"Service {SERVICE_SECRET}"}
WRONG = {"Authorization": "Service wrong-secret-0123456789abcdef"}
HUGE = "x" * (70 * 1024)
HASH = "A" * 43
USER_42_HASH = draw_session_token("42")[1]  # a hash that can be user 42's: the store must ask Redis about it
REFRESH = RefreshToken(USER_42_HASH, "AAAAAAAAAAAA", 0, "00" * 20).encode()  # a well-formed refresh token
APP_ORIGIN = {"Origin": "http://app.test"}


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def _validator(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator({"components": DOC["components"], "allOf": [schema]})


@dataclass
class Ctx:
    """The apps a case may need: the normal one, one whose Redis is down, one with limits of 1."""

    client: FlaskClient
    api: Api
    oauth: OAuth
    dead: FlaskClient
    limited: FlaskClient

    def tokens(self, scope: str = "openid profile email") -> dict[str, Any]:
        self.oauth.login("42")
        return self.oauth.tokens(scope=scope)

    def session(self) -> dict[str, Any]:
        return self.api.create("42")

    def over_limit(self, request: Callable[[FlaskClient], TestResponse]) -> TestResponse:
        """The same failing request until it is refused (limits of 1 per minute: the second)."""
        request(self.limited)
        return request(self.limited)


@pytest.fixture
def ctx(settings, key_pair, prefix, redis, client, api, oauth) -> Ctx:  # noqa: ARG001 - redis cleans our keys
    dead = create_app(make_settings(f"redis://127.0.0.1:{free_port()}/0", prefix, key_pair))
    one = RateLimit(1, 60)
    limits = {"rate_limit_service_auth_failures": one, "rate_limit_token_failures": one,
              "rate_limit_authorize_failures": one}  # fmt: skip
    limited = create_app(make_settings(settings.redis_url, prefix + "l:", key_pair, **limits))
    return Ctx(client, api, oauth, dead.test_client(), limited.test_client())


def _post(path: str, **kwargs: Any) -> Callable[[FlaskClient], TestResponse]:
    return lambda c: c.post(path, **kwargs)


def _service_cases(path: str, good: dict[str, Any], bad: dict[str, Any], ok: int = 200) -> dict[int, Any]:
    """The statuses every service POST documents, from one good and one bad JSON body."""
    return {
        ok: lambda x: x.client.post(path, json=good(x) if callable(good) else good, headers=SERVICE),
        400: lambda x: x.client.post(path, json=bad, headers=SERVICE),
        401: lambda x: x.client.post(path, json=good if not callable(good) else {}),
        413: lambda x: x.client.post(path, data=HUGE, content_type="application/json", headers=SERVICE),
        415: lambda x: x.client.post(path, data="user_id=1", content_type="text/plain", headers=SERVICE),
        429: lambda x: x.over_limit(_post(path, json={}, headers=WRONG)),
        503: lambda x: x.dead.post(path, json=good if not callable(good) else {"token_hash": HASH}, headers=SERVICE),
    }


def _authorize_query(**extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": "fluxer", "redirect_uri": REDIRECT_URI, "state": "s",
            "code_challenge": CHALLENGE, "code_challenge_method": "S256", "scope": "openid", **extra}  # fmt: skip


def _with_cookie(client: FlaskClient, token: str) -> FlaskClient:
    client.set_cookie(COOKIE_NAME, token, domain="localhost")
    return client


def _logged_in(x: Ctx) -> FlaskClient:
    return _with_cookie(x.client, x.session()["token"])


def _token_form(**extra: str) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": "never-issued", "redirect_uri": REDIRECT_URI,
            "code_verifier": "v" * 43, "client_id": "fluxer", **extra}  # fmt: skip


def _userinfo(method: str) -> dict[int, Any]:
    def call(client: FlaskClient, token: str) -> TestResponse:
        return client.open("/userinfo", method=method.upper(), headers={"Authorization": f"Bearer {token}"})

    def call_with_body(client: FlaskClient, token: str) -> TestResponse:
        return client.post("/userinfo", data={"pad": HUGE}, headers={"Authorization": f"Bearer {token}"})

    cases: dict[int, Any] = {
        200: lambda x: call(x.client, x.tokens()["access_token"]),
        401: lambda x: call(x.client, "not-a-token"),
        403: lambda x: call(x.client, x.tokens(scope="profile")["access_token"]),
        503: lambda x: call(x.dead, x.tokens()["access_token"]),
    }
    if method == "post":
        cases[413] = lambda x: call_with_body(x.client, x.tokens()["access_token"])
    return cases


def _authorize(method: str) -> dict[int, Any]:
    def call(client: FlaskClient, query: dict[str, str]) -> TestResponse:
        if method == "get":
            return client.get("/authorize", query_string=query)
        return client.post("/authorize", data=query)

    cases: dict[int, Any] = {
        302: lambda x: call(_logged_in(x), _authorize_query()),
        400: lambda x: call(x.client, _authorize_query(client_id="unknown-client")),
        429: lambda x: x.over_limit(lambda c: call(_with_cookie(c, "dead-cookie"), _authorize_query())),
        503: lambda x: call(_with_cookie(x.dead, "some-cookie"), _authorize_query()),
    }
    if method == "post":
        cases[413] = lambda x: x.client.post("/authorize", data={**_authorize_query(), "pad": HUGE})
    return cases


def _exchange(x: Ctx) -> TestResponse:
    x.oauth.login("42")
    return x.oauth.exchange(x.oauth.code())


def _logout_redirect(x: Ctx) -> TestResponse:
    return x.client.get("/logout", query_string={"post_logout_redirect_uri": "http://app.test/", "state": "s"})


CASES: dict[tuple[str, str, int], Callable[[Ctx], TestResponse]] = {
    **{("post", "/session/create", s): f for s, f in _service_cases(
        "/session/create", {"user_id": "42"}, {"user_id": "no spaces"}, ok=201).items()},
    **{("post", "/session/validate", s): f for s, f in _service_cases(
        "/session/validate", lambda x: {"token_hash": x.session()["session_id_hash"]}, {"token_hash": 1}).items()},
    **{("post", "/session/invalidate", s): f for s, f in _service_cases(
        "/session/invalidate", {"user_id": "42", "session_id_hashes": [USER_42_HASH]}, {"user_id": "42"}).items()},
    **{("post", "/session/status", s): f for s, f in _service_cases(
        "/session/status", {"session_id_hashes": [USER_42_HASH]}, {"session_id_hashes": []}).items()},
    **{("post", "/session/invalidate-all", s): f for s, f in _service_cases(
        "/session/invalidate-all", {"user_id": "42"}, {"user_id": ""}).items()},
    ("get", "/session/list/{user_id}", 200): lambda x: x.client.get("/session/list/42", headers=SERVICE),
    ("get", "/session/list/{user_id}", 400): lambda x: x.client.get(f"/session/list/{'x' * 65}", headers=SERVICE),
    ("get", "/session/list/{user_id}", 401): lambda x: x.client.get("/session/list/42"),
    ("get", "/session/list/{user_id}", 404): lambda x: x.client.get("/session/list/a%2Fb", headers=SERVICE),
    ("get", "/session/list/{user_id}", 429): lambda x: x.over_limit(
        lambda c: c.get("/session/list/42", headers=WRONG)),
    ("get", "/session/list/{user_id}", 503): lambda x: x.dead.get("/session/list/42", headers=SERVICE),
    ("post", "/session/set-cookie", 204): lambda x: x.client.post(
        "/session/set-cookie", json={"token": x.session()["token"]}, headers=APP_ORIGIN),
    ("post", "/session/set-cookie", 400): lambda x: x.client.post("/session/set-cookie", json={}),
    ("post", "/session/set-cookie", 401): lambda x: x.client.post("/session/set-cookie", json={"token": "nope"}),
    ("post", "/session/set-cookie", 403): lambda x: x.client.post(
        "/session/set-cookie", json={"token": "nope"}, headers={"Origin": "https://evil.test"}),
    ("post", "/session/set-cookie", 413): lambda x: x.client.post(
        "/session/set-cookie", data=HUGE, content_type="application/json"),
    ("post", "/session/set-cookie", 415): lambda x: x.client.post("/session/set-cookie", data={"token": "t"}),
    ("post", "/session/set-cookie", 503): lambda x: x.dead.post(
        "/session/set-cookie", json={"token": "t" * 43}),
    ("post", "/logout", 204): lambda x: _logged_in(x).post("/logout", data={"invalidate": "session"},
                                                          headers=APP_ORIGIN),
    ("post", "/logout", 303): lambda x: _logged_in(x).post(
        "/logout", data={"post_logout_redirect_uri": "http://app.test/", "state": "s"}, headers=APP_ORIGIN),
    ("post", "/logout", 400): lambda x: x.client.post(
        "/logout", data={"invalidate": "everything"}, headers=APP_ORIGIN),
    ("post", "/logout", 403): lambda x: x.client.post("/logout", headers={"Origin": "https://evil.test"}),
    ("post", "/logout", 413): lambda x: x.client.post("/logout", data={"pad": HUGE}, headers=APP_ORIGIN),
    ("post", "/logout", 415): lambda x: x.client.post("/logout", json={"invalidate": "session"}, headers=APP_ORIGIN),
    ("post", "/logout", 503): lambda x: _with_cookie(x.dead, "c" * 43).post(
        "/logout", data={"invalidate": "session"}, headers=APP_ORIGIN),
    ("get", "/logout", 200): lambda x: x.client.get("/logout"),
    ("get", "/logout", 303): _logout_redirect,
    ("get", "/logout", 400): lambda x: x.client.get("/logout", query_string={"state": "x" * 2000}),
    ("get", "/logout", 503): lambda x: _with_cookie(x.dead, "c" * 43).get(
        "/logout", query_string={"id_token_hint": x.tokens()["id_token"]}),
    **{("get", "/authorize", s): f for s, f in _authorize("get").items()},
    **{("post", "/authorize", s): f for s, f in _authorize("post").items()},
    ("post", "/token", 200): _exchange,
    ("post", "/token", 400): lambda x: x.client.post("/token", data=_token_form()),
    ("post", "/token", 401): lambda x: x.client.post("/token", data=_token_form(client_id="unknown-client")),
    ("post", "/token", 413): lambda x: x.client.post("/token", data=_token_form(pad=HUGE)),
    ("post", "/token", 415): lambda x: x.client.post("/token", json=_token_form()),
    ("post", "/token", 429): lambda x: x.over_limit(_post("/token", data=_token_form())),
    ("post", "/token", 503): lambda x: x.dead.post("/token", data=_token_form()),
    **{("get", "/userinfo", s): f for s, f in _userinfo("get").items()},
    **{("post", "/userinfo", s): f for s, f in _userinfo("post").items()},
    ("post", "/introspect", 200): lambda x: x.client.post("/introspect", data={"token": x.tokens()["access_token"]},
                                                          headers=SERVICE),
    ("post", "/introspect", 400): lambda x: x.client.post(
        "/introspect", data={"token_type_hint": "access_token"}, headers=SERVICE),
    ("post", "/introspect", 401): lambda x: x.client.post("/introspect", data={"token": "t"}),
    ("post", "/introspect", 413): lambda x: x.client.post("/introspect", data={"token": HUGE}, headers=SERVICE),
    ("post", "/introspect", 415): lambda x: x.client.post("/introspect", json={"token": "t"}, headers=SERVICE),
    ("post", "/introspect", 429): lambda x: x.over_limit(_post("/introspect", data={"token": "t"}, headers=WRONG)),
    ("post", "/introspect", 503): lambda x: x.dead.post("/introspect", data={"token": REFRESH}, headers=SERVICE),
    ("post", "/revoke", 200): lambda x: x.client.post("/revoke", data={"token": "t", "client_id": "fluxer"}),
    ("post", "/revoke", 400): lambda x: x.client.post("/revoke", data={"client_id": "fluxer"}),
    ("post", "/revoke", 401): lambda x: x.client.post("/revoke", data={"token": "t", "client_id": "unknown-client"}),
    ("post", "/revoke", 413): lambda x: x.client.post("/revoke", data={"token": HUGE, "client_id": "fluxer"}),
    ("post", "/revoke", 415): lambda x: x.client.post("/revoke", json={"token": "t", "client_id": "fluxer"}),
    ("post", "/revoke", 429): lambda x: x.over_limit(_post("/revoke", data={"token": "t"}, headers=WRONG)),
    ("post", "/revoke", 503): lambda x: x.dead.post("/revoke", data={"token": REFRESH, "client_id": "fluxer"}),
    ("get", "/.well-known/openid-configuration", 200): lambda x: x.client.get("/.well-known/openid-configuration"),
    ("get", "/.well-known/jwks.json", 200): lambda x: x.client.get("/.well-known/jwks.json"),
    ("get", "/openapi.json", 200): lambda x: x.client.get("/openapi.json"),
    ("get", "/metrics", 200): lambda x: x.client.get("/metrics", headers=SERVICE),
    ("get", "/metrics", 401): lambda x: x.client.get("/metrics"),
    ("get", "/metrics", 429): lambda x: x.over_limit(lambda c: c.get("/metrics", headers=WRONG)),
    ("get", "/metrics", 503): lambda x: x.dead.get("/metrics", headers=WRONG),  # counting the failure needs Redis
    ("get", "/_health", 200): lambda x: x.client.get("/_health"),
    ("get", "/_health", 503): lambda x: x.dead.get("/_health"),
}  # fmt: skip


def _documented() -> set[tuple[str, str, int]]:
    return {
        (method, path, int(status))
        for path, item in DOC["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    }


def test_every_documented_status_has_a_case_and_no_case_is_undocumented():
    """The cases below are exactly the document's (method, path, status) triples."""
    assert set(CASES) == _documented()


def _header_value(schema: dict[str, Any], raw: str) -> Any:
    return int(raw) if schema.get("type") == "integer" else raw


@pytest.mark.parametrize(("method", "path", "status"), sorted(CASES), ids=lambda v: str(v))
def test_the_app_answers_as_documented(ctx, method, path, status):
    """The real answer has the documented status, a body valid against its schema and every required header."""
    response = CASES[(method, path, status)](ctx)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    documented = _resolve(DOC["paths"][path][method]["responses"][str(status)])
    for name, header in documented.get("headers", {}).items():
        header = _resolve(header)
        if header.get("required"):
            assert name in response.headers, f"{name} is documented as required"
            value = _header_value(header["schema"], response.headers[name])
            errors = [e.message for e in _validator(header["schema"]).iter_errors(value)]
            assert errors == [], (name, response.headers[name])
    content = documented.get("content")
    if not content:
        assert response.get_data() == b"", "an answer documented without a body has one"
        return
    assert response.mimetype in content, (response.mimetype, list(content))
    if response.mimetype != "application/json":
        return
    schema = content["application/json"]["schema"]
    errors = [e.message for e in _validator(schema).iter_errors(json.loads(response.get_data()))]
    assert errors == [], response.get_data(as_text=True)[:500]


def test_every_example_in_the_document_validates_against_its_schema():
    """Examples are shaped like real answers: each one validates, and every JSON success answer has one."""
    checked = 0
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                media = _resolve(response).get("content", {}).get("application/json")
                if media is None or path == "/openapi.json":
                    continue
                assert "example" in media, (method, path, status)
                errors = [e.message for e in _validator(media["schema"]).iter_errors(media["example"])]
                assert errors == [], (method, path, status, errors)
                checked += 1
    assert checked > 50


def test_the_unauthorized_responses_promise_only_the_challenges_they_send():
    """Service 401s require `Service realm="fluxer-sso"`; /token's and /session/set-cookie's promise none."""
    responses = DOC["paths"]

    def unauthorized(path: str, method: str = "post") -> dict[str, Any]:
        return _resolve(responses[path][method]["responses"]["401"])

    assert unauthorized("/session/create")["headers"]["WWW-Authenticate"]["schema"]["const"] == (
        'Service realm="fluxer-sso"'
    )
    assert "headers" not in unauthorized("/token") and "headers" not in unauthorized("/session/set-cookie")
    assert unauthorized("/userinfo", "get")["headers"]["WWW-Authenticate"]["required"] is True
    token = DOC["components"]["schemas"]["Token"]
    assert token["required"] == ["grant_type", "client_id"]
    assert token["properties"]["grant_type"]["enum"] == ["authorization_code", "refresh_token"]
