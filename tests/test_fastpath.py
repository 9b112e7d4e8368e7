"""/session/validate and /introspect are answered before Flask when the call is plain (sso/fastpath.py).

The answer must be exactly what the Flask view gives, the same access-log line and
metrics must be written, and everything that is not a plain success must reach the
view with its body intact, so that refusals keep their one implementation.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError

from sso.fastpath import FastPath, Redirect
from sso.views import oauth
from tests.conftest import OTHER_SECRET, REDIRECT_URI, SERVICE_SECRET, VERIFIER
from tests.test_operations import log_lines  # noqa: F401 - a fixture

pytestmark = pytest.mark.topologies

HEADERS = {"Authorization": f"Service {SERVICE_SECRET}", "X-Request-ID": "same-id"}
FORM = "application/x-www-form-urlencoded"


def _fast_path(app: Flask) -> FastPath:
    layer = app.wsgi_app
    while not isinstance(layer, FastPath):
        layer = layer.app  # type: ignore[attr-defined]
    return layer


class _Counting:
    """Wraps the Flask side of the fast path and counts the requests that reach it."""

    def __init__(self, fast: FastPath) -> None:
        self.inner, self.calls, self.fast = fast.app, 0, fast

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.calls += 1
        return self.inner(environ, start_response)

    def __enter__(self) -> _Counting:
        self.fast.app = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.fast.app = self.inner


def _through_flask(app: Flask, call: Any) -> Any:
    """The same request answered by the Flask view, with the fast path skipped."""
    fast = _fast_path(app)
    routes, fast.routes = fast.routes, {}
    try:
        return call()
    finally:
        fast.routes = routes


def _validate(client, body: Any, headers: dict[str, str] = HEADERS, **kwargs: Any):
    return client.post("/session/validate", json=body, headers=headers, **kwargs)


def _introspect(client, data: Any, headers: dict[str, str] = HEADERS, **kwargs: Any):
    return client.post("/introspect", data=data, headers=headers, **kwargs)


def _same(fast, slow) -> None:
    assert fast.status_code == slow.status_code
    assert fast.data == slow.data
    for name in ("Content-Type", "Content-Length", "Cache-Control", "Pragma", "X-Request-ID"):
        assert fast.headers.get(name) == slow.headers.get(name), name
    assert sorted(k for k, _ in fast.headers) == sorted(k for k, _ in slow.headers)


def test_validate_answers_as_the_view_does(app, client, api):
    session = api.create("42", claims={"name": "Ada Lovelace", "locale": "ü"})
    with _Counting(_fast_path(app)) as flask_side:
        fast = _validate(client, {"token_hash": session["session_id_hash"]})
        missing = _validate(client, {"token_hash": "A" * 43})
    assert flask_side.calls == 0
    assert fast.status_code == 200 and fast.get_json()["valid"] is True
    assert fast.get_json()["session"]["user_id"] == "42"
    assert missing.get_json() == {"valid": False}
    _same(fast, _through_flask(app, lambda: _validate(client, {"token_hash": session["session_id_hash"]})))
    _same(missing, _through_flask(app, lambda: _validate(client, {"token_hash": "A" * 43})))


def test_introspect_answers_as_the_view_does(app, client, oauth):
    oauth.login("42")
    tokens = oauth.tokens()
    with _Counting(_fast_path(app)) as flask_side:
        access = _introspect(client, {"token": tokens["access_token"]})
        refresh = _introspect(client, {"token": tokens["refresh_token"], "token_type_hint": "refresh_token"})
        junk = _introspect(client, {"token": "not-a-token", "client_id": "ignored"})
    assert flask_side.calls == 0
    assert access.get_json()["active"] is True and access.get_json()["sub"] == "42"
    assert refresh.get_json()["active"] is True and refresh.get_json()["token_type"] == "refresh_token"
    assert junk.get_json() == {"active": False}
    _same(access, _through_flask(app, lambda: _introspect(client, {"token": tokens["access_token"]})))
    _same(junk, _through_flask(app, lambda: _introspect(client, {"token": "not-a-token", "client_id": "ignored"})))


def test_the_rotated_service_secret_is_accepted_too(app, client, api):
    session = api.create("42")
    with _Counting(_fast_path(app)) as flask_side:
        response = _validate(client, {"token_hash": session["session_id_hash"]},
                             headers={"Authorization": f"service {OTHER_SECRET}"})  # fmt: skip
    assert flask_side.calls == 0 and response.get_json()["valid"] is True


REFUSED_VALIDATE = [
    ({"Authorization": "Service wrong", "X-Request-ID": "same-id"}, {"token_hash": "A" * 43}, {}, 401),
    ({"X-Request-ID": "same-id"}, {"token_hash": "A" * 43}, {}, 401),
    ({"Authorization": f"Bearer {SERVICE_SECRET}", "X-Request-ID": "same-id"}, {"token_hash": "A" * 43}, {}, 401),
    (HEADERS, {"token_hash": "short"}, {}, 400),
    (HEADERS, {"token_hash": "A" * 43, "extra": 1}, {}, 400),
    (HEADERS, ["A" * 43], {}, 400),
    (HEADERS, None, {"data": b"{not json", "content_type": "application/json"}, 400),
    (HEADERS, None, {"data": json.dumps({"token_hash": "A" * 43}), "content_type": "text/plain"}, 415),
    (HEADERS, None, {"data": b"[" * 5000 + b"]" * 5000, "content_type": "application/json"}, 400),
]


@pytest.mark.parametrize(("headers", "body", "kwargs", "status"), REFUSED_VALIDATE)
def test_refused_validations_reach_the_view_with_their_body(app, client, headers, body, kwargs, status):
    call = (lambda: client.post("/session/validate", headers=headers, **kwargs)) if body is None else (
        lambda: _validate(client, body, headers=headers))  # fmt: skip
    with _Counting(_fast_path(app)) as flask_side:
        response = call()
    assert flask_side.calls == 1
    assert response.status_code == status and "error" in response.get_json()
    assert response.headers["Content-Type"] == "application/json"
    _same(response, _through_flask(app, call))


REFUSED_INTROSPECT = [
    ({"token": "a", "token_type_hint": "id_token"}, 400, "unsupported_token_type"),  # raised by the service
    ("token=a&token=b", 400, "invalid_request"),  # repeated
    ({"token": ""}, 400, "invalid_request"),
    ("", 400, "invalid_request"),
]


@pytest.mark.parametrize(("data", "status", "error"), REFUSED_INTROSPECT)
def test_refused_introspections_get_the_views_answer(app, client, data, status, error):
    kwargs = {"content_type": FORM} if isinstance(data, str) else {}
    fast = _introspect(client, data, **kwargs)
    assert fast.status_code == status and fast.get_json()["error"] == error
    _same(fast, _through_flask(app, lambda: _introspect(client, data, **kwargs)))


def test_percent_escapes_are_decoded_as_werkzeug_does_and_bad_utf8_goes_to_the_view(app, client, oauth):
    oauth.login("42")
    token = oauth.tokens()["access_token"]
    escaped = "token=" + "".join(f"%{b:02X}" for b in token.encode())
    invalid = b"token=caf\xe9"  # Latin-1, not UTF-8
    with _Counting(_fast_path(app)) as flask_side:
        response = _introspect(client, escaped, content_type=FORM)
        latin = _introspect(client, invalid, content_type=FORM)
        odd = _introspect(client, "token=%FF%FE", content_type=FORM)  # escapes of bytes that are not UTF-8
    assert flask_side.calls == 1  # only the undecodable body
    assert response.get_json()["active"] is True and response.get_json()["sub"] == "42"
    assert latin.status_code == 400 and latin.get_json()["error"] == "invalid_request"
    _same(latin, _through_flask(app, lambda: _introspect(client, invalid, content_type=FORM)))
    _same(odd, _through_flask(app, lambda: _introspect(client, "token=%FF%FE", content_type=FORM)))
    assert odd.get_json() == {"active": False}


APP = {"Origin": "http://app.test", "X-Request-ID": "same-id"}


def _headers_alike(fast, slow) -> None:
    """Two token responses: the same headers but for Content-Length (the tokens differ)."""
    assert fast.status_code == slow.status_code == 200
    assert sorted(k for k, _ in fast.headers) == sorted(k for k, _ in slow.headers)
    for name, value in slow.headers:
        if name != "Content-Length":
            assert fast.headers[name] == value, name
    fast_body, slow_body = fast.get_json(), slow.get_json()
    assert list(fast_body) == list(slow_body)
    for name in ("token_type", "expires_in", "scope"):
        assert fast_body[name] == slow_body[name], name


def test_code_exchange_and_refresh_answer_as_the_view_does(app, client, oauth):
    """The form's redirect_uri arrives percent-encoded, as a browser sends it; CORS as the view sets it."""
    oauth.login("42")
    with _Counting(_fast_path(app)) as flask_side:
        code = oauth.code()
        exchanged = client.post("/token", data=_code_form(code), headers=APP)
        refreshed = client.post("/token", data=_refresh_form(exchanged.get_json()["refresh_token"]), headers=APP)
        stranger = client.post("/token", data=_refresh_form(refreshed.get_json()["refresh_token"]),
                               headers={"Origin": "http://evil.test"})  # fmt: skip
    assert flask_side.calls == 0
    assert exchanged.get_json()["id_token"] and refreshed.get_json()["access_token"]
    assert refreshed.headers["Access-Control-Allow-Origin"] == "http://app.test"
    assert stranger.status_code == 200 and "Access-Control-Allow-Origin" not in stranger.headers
    assert stranger.headers["Vary"] == "Origin"
    code = oauth.code()
    slow_exchange = _through_flask(app, lambda: client.post("/token", data=_code_form(code), headers=APP))
    _headers_alike(exchanged, slow_exchange)
    slow_refresh = _through_flask(app, lambda: client.post(
        "/token", data=_refresh_form(slow_exchange.get_json()["refresh_token"]), headers=APP))  # fmt: skip
    _headers_alike(refreshed, slow_refresh)


def _code_form(code: str) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER, "client_id": "fluxer"}  # fmt: skip


def _refresh_form(token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": token, "client_id": "fluxer"}


def test_a_failed_grant_is_raised_by_the_view_once_and_answered_with_cors(app, client, oauth, services):
    """A reused refresh token: one grant call (the reuse revokes the family), Flask's invalid_grant with CORS."""
    oauth.login("42")
    first = oauth.tokens()["refresh_token"]
    second = client.post("/token", data=_refresh_form(first)).get_json()["refresh_token"]
    calls = []
    real = services.grants.token

    def counting(data: dict[str, Any]) -> Any:
        calls.append(data["grant_type"])
        return real(data)

    services.grants.token = counting
    try:
        with _Counting(_fast_path(app)) as flask_side:
            reused = client.post("/token", data=_refresh_form(first), headers=APP)
    finally:
        del services.grants.token
    assert calls == ["refresh_token"] and flask_side.calls == 1
    assert reused.status_code == 400 and reused.get_json()["error"] == "invalid_grant"
    assert reused.headers["Access-Control-Allow-Origin"] == "http://app.test"
    assert reused.headers["X-Request-ID"] == "same-id" and reused.headers["Cache-Control"] == "no-store"
    assert client.post("/token", data=_refresh_form(second)).get_json()["error"] == "invalid_grant"  # revoked


def test_lines_the_service_call_writes_carry_the_request_id(client, oauth, log_lines):  # noqa: F811
    """The reuse warning is written inside the grant, before Flask has a request context."""
    oauth.login("42")
    first = oauth.tokens()["refresh_token"]
    client.post("/token", data=_refresh_form(first))
    client.post("/token", data=_refresh_form(first), headers={"X-Request-ID": "the-reuse"})
    (warning,) = [line for line in log_lines() if "reuse detected" in line["event"]]
    assert warning["request_id"] == "the-reuse" and warning["level"] == "warning"
    later = client.post("/session/validate", json={"token_hash": "A" * 43}, headers={"Authorization": "x"})
    assert later.status_code == 401
    last = log_lines()[-1]
    assert last["status"] == 401 and last["request_id"] != "the-reuse"  # not left behind


def test_json_media_type_parameters_and_case_are_the_views_rules(app, client, api):
    session = api.create("42")
    body = json.dumps({"token_hash": session["session_id_hash"]})
    with _Counting(_fast_path(app)) as flask_side:
        response = client.post("/session/validate", data=body, headers=HEADERS,
                               content_type="Application/JSON; charset=utf-8")  # fmt: skip
    assert flask_side.calls == 0 and response.get_json()["valid"] is True


def test_oversized_and_chunked_bodies_reach_the_view(app, client):
    with _Counting(_fast_path(app)) as flask_side:
        big = client.post("/introspect", data="token=" + "a" * 70_000, headers=HEADERS, content_type=FORM)
        chunked = client.post("/session/validate", data=b'{"token_hash": "x"}', content_type="application/json",
                              headers={**HEADERS, "Transfer-Encoding": "chunked"})  # fmt: skip
    assert flask_side.calls == 2
    assert big.status_code == 413 and big.get_json()["error"] == "invalid_request"
    assert chunked.status_code == 400


def test_a_dechunked_body_is_read_whole_first(app, client, api):
    """As gunicorn passes it (wsgi.input_terminated): within the limit answered here, over it the view's 413."""
    session = api.create("42")
    body = json.dumps({"token_hash": session["session_id_hash"]}).encode()
    chunked = {**HEADERS, "Transfer-Encoding": "chunked"}

    def post(data: bytes) -> Any:
        return client.post("/session/validate", data=data, content_type="application/json", headers=chunked,
                           environ_overrides={"wsgi.input_terminated": True})  # fmt: skip

    at_limit = body + b" " * (64 * 1024 - len(body))
    with _Counting(_fast_path(app)) as flask_side:
        fast = post(at_limit)
    assert flask_side.calls == 0 and fast.get_json()["valid"] is True
    _same(fast, _through_flask(app, lambda: post(at_limit)))
    with _Counting(_fast_path(app)) as flask_side:
        big = post(at_limit + b" ")
    assert flask_side.calls == 1
    assert big.status_code == 413 and big.get_json()["error"] == "invalid_request"
    _same(big, _through_flask(app, lambda: post(at_limit + b" ")))


def test_a_redis_failure_in_the_service_call_is_rendered_once_by_flask(app, client, services, monkeypatch):
    """The exception is handed over, not retried: one Redis attempt, Flask's 503."""
    calls = []

    def failing(sid: str) -> Any:
        calls.append(sid)
        raise RedisConnectionError("down")

    monkeypatch.setattr(services.sessions, "find", failing)
    response = _validate(client, {"token_hash": "A" * 43})
    assert response.status_code == 503 and response.get_json()["error"] == "temporarily_unavailable"
    assert response.headers["X-Request-ID"] == "same-id" and response.headers["Cache-Control"] == "no-store"
    assert calls == ["A" * 43]


def test_other_methods_and_near_paths_reach_flask(app, client):
    with _Counting(_fast_path(app)) as flask_side:
        get = client.get("/introspect", headers=HEADERS)
        slash = client.post("/session/validate/", json={"token_hash": "A" * 43}, headers=HEADERS)
    assert flask_side.calls == 2
    assert get.status_code == 405 and get.get_json()["error"] == "method_not_allowed"
    assert slash.status_code in (308, 404)


def _count(endpoint: str, status: str) -> float:
    labels = {"endpoint": endpoint, "method": "POST", "status": status}
    return REGISTRY.get_sample_value("sso_http_requests_total", labels) or 0.0


def test_token_access_log_line_names_the_user_as_the_views_does(app, client, oauth, log_lines):  # noqa: F811
    oauth.login("555")
    refresh = oauth.tokens()["refresh_token"]
    fast = client.post("/token", data=_refresh_form(refresh), headers=APP)
    _through_flask(app, lambda: client.post("/token", data=_refresh_form(fast.get_json()["refresh_token"]),
                                            headers=APP))  # fmt: skip
    fast_line, slow_line = [
        line for line in log_lines() if line["logger"] == "sso.access" and line["path"] == "/token"
    ][-2:]
    for line in (fast_line, slow_line):
        line.pop("ts"), line.pop("duration_ms")
    assert fast_line == slow_line and list(fast_line) == list(slow_line)
    assert fast_line["user_id"] == "555" and fast_line["status"] == 200


def test_access_log_line_and_metrics_are_the_views(app, client, api, log_lines):  # noqa: F811
    session = api.create("777")
    before = _count("/session/validate", "200"), _count("/introspect", "200")
    _validate(client, {"token_hash": session["session_id_hash"]})
    _through_flask(app, lambda: _validate(client, {"token_hash": session["session_id_hash"]}))
    _introspect(client, {"token": "junk"})
    assert _count("/session/validate", "200") == before[0] + 2
    assert _count("/introspect", "200") == before[1] + 1
    lines = [line for line in log_lines() if line["logger"] == "sso.access" and line["path"] != "/session/create"]
    fast, slow, introspected = lines
    for line in (fast, slow):
        line.pop("ts"), line.pop("duration_ms")
    assert fast == slow
    assert list(fast) == list(slow)  # the same fields in the same order
    assert fast["user_id"] == "777" and fast["request_id"] == "same-id" and fast["status"] == 200
    assert introspected["path"] == "/introspect" and "user_id" not in introspected
    assert SERVICE_SECRET not in json.dumps(lines) and "junk" not in json.dumps(lines)


@pytest.mark.parametrize("content_type", ["application/json\xa0", "\x85application/json", "application/json\x0b"])
def test_only_werkzeugs_whitespace_is_trimmed_from_the_media_type(app, client, api, content_type):
    """Werkzeug strips spaces and tabs only: other whitespace makes it another type, answered 415 by the view."""
    body = json.dumps({"token_hash": api.create("42")["session_id_hash"]})

    def call() -> Any:
        return client.post("/session/validate", data=body, headers={**HEADERS, "Content-Type": content_type})

    with _Counting(_fast_path(app)) as flask_side:
        response = call()
    assert flask_side.calls == 1 and response.status_code == 415
    _same(response, _through_flask(app, call))


@pytest.mark.parametrize(
    "length", ["\xb2", "0" * 5000 + "5", "-1", "99"], ids=["superscript", "long", "minus", "short"]
)
def test_malformed_or_short_content_lengths_get_the_views_answer(app, client, length):
    """Werkzeug reads a malformed Content-Length as 0; a body shorter than its length is the view's to judge."""

    def call() -> Any:
        return client.post("/session/validate", data=json.dumps({"token_hash": "A" * 43}), headers=HEADERS,
                           content_type="application/json", environ_overrides={"CONTENT_LENGTH": length})  # fmt: skip

    response = call()
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
    _same(response, _through_flask(app, call))


def test_in_debug_mode_flask_answers_with_its_indented_json(app, client, api):
    sid = api.create("42")["session_id_hash"]
    app.debug = True
    try:
        with _Counting(_fast_path(app)) as flask_side:
            response = _validate(client, {"token_hash": sid})
    finally:
        app.debug = False
    assert flask_side.calls == 1 and b'\n  "session"' in response.data


def _decorators(view: Any) -> tuple[list[str], Any]:
    """Every decorator around a view function, outermost first, and the schema its use_schema loads."""
    names, schema = [], None
    while hasattr(view, "__wrapped__"):
        name = view.__code__.co_qualname.split(".")[0]  # wraps() copies __qualname__, not the code
        names.append(name)
        if name == "use_schema":
            schema = next(c.cell_contents for c in view.__closure__ if hasattr(c.cell_contents, "load"))
        view = view.__wrapped__
    return names, schema


def _hooks(funcs: dict[Any, list[Any]]) -> dict[Any, list[str]]:
    return {scope: [f.__qualname__ for f in hooks] for scope, hooks in funcs.items() if hooks}


def test_each_fast_route_stands_for_its_view(app):
    """A view that gains a decorator (a check, a limit) must be looked at again here: the fast path skips it."""
    expected = {
        "/session/validate": ["require_service", "use_schema"],
        "/introspect": ["require_service", "use_schema"],
        "/token": ["rate_limited", "use_schema"],
        "/authorize": ["rate_limited"],  # the view itself hands a failed outcome to count_failure
    }
    # what the fast path does in place of the hooks: the request id, the accounting, oauth's CORS
    # (meta's preflight hook is for the public documents' OPTIONS, no fast route's)
    assert _hooks(app.before_request_funcs) == {None: ["register_request_hooks.<locals>.start_request"]}
    assert _hooks(app.after_request_funcs) == {
        None: ["register_request_hooks.<locals>.finish_request"], "browser": ["_cors"], "oauth": ["_cors"],
        "meta": ["public_preflight"]}  # fmt: skip
    fast = _fast_path(app)
    assert set(fast.routes) == set(expected)
    for rule in app.url_map.iter_rules():
        route = fast.routes.get(rule.rule)
        if route is None:
            continue
        decorators, schema = _decorators(app.view_functions[rule.endpoint])
        assert decorators == expected[rule.rule], rule.rule
        if isinstance(route, Redirect):  # the view's own call, on a GET it routes
            assert "GET" in rule.methods and route.answer.func is oauth.authorization, rule.rule
            continue
        assert "POST" in rule.methods, rule.rule
        assert type(schema) is type(route.schema), rule.rule
        assert route.service == ("require_service" in decorators), rule.rule
        assert (route.cors_origins is not None) == (rule.endpoint in oauth.BROWSER_ENDPOINTS), rule.rule


# GET /authorize: a logged-in browser's redirect with a code, answered before Flask (sso.fastpath.Redirect)

BROWSER = {"X-Request-ID": "same-id"}


def _query(response) -> dict[str, list[str]]:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(response.headers["Location"]).query)


def _same_redirect(fast, slow, *, differing: tuple[str, ...] = ()) -> None:
    """The same status, body and headers; only the named query parameters of Location may differ (a new code)."""
    assert fast.status == slow.status == "302 FOUND" and fast.data == slow.data == b""
    assert [k for k, _ in fast.headers] == [k for k, _ in slow.headers]
    for name, value in slow.headers:
        if name != "Location":
            assert fast.headers[name] == value, name
    fast_q, slow_q = _query(fast), _query(slow)
    assert fast.headers["Location"].split("?")[0] == slow.headers["Location"].split("?")[0]
    assert list(fast_q) == list(slow_q)
    assert {k: v for k, v in fast_q.items() if k not in differing} == {
        k: v for k, v in slow_q.items() if k not in differing}  # fmt: skip


def test_authorize_with_a_cookie_answers_as_the_view_does(app, client, oauth):
    oauth.login("42")
    with _Counting(_fast_path(app)) as flask_side:
        fast = client.get("/authorize", query_string=oauth.authorize_params(), headers=BROWSER)
    assert flask_side.calls == 0
    assert fast.status_code == 302 and fast.headers["Location"].startswith(REDIRECT_URI + "?")
    query = _query(fast)
    assert query["state"] == ["xyz-state"] and query["code"][0]
    assert fast.headers["Cache-Control"] == "no-store" and fast.headers["X-Request-ID"] == "same-id"
    slow = _through_flask(app, lambda: client.get("/authorize", query_string=oauth.authorize_params(), headers=BROWSER))
    _same_redirect(fast, slow, differing=("code",))
    assert oauth.exchange(query["code"][0]).status_code == 200  # the fast path's code is a real one


@pytest.mark.parametrize(
    ("cookie", "handed_over"),
    [
        (None, 0),  # no SSO session: the login page, not a failure
        ("{name}=a; {name}=b", 0),  # two are none (sso.cookies.sso_cookie): the login page
        ('other=1; {name}="{live}"', 0),  # quoted, after another cookie: read as Werkzeug reads it
        ('{name}="' + "x" * 40 + '"; other=1', 1),  # not a live session: a failure, counted by the view
    ],
    ids=["none", "two", "quoted", "stale"],
)
def test_authorize_reads_the_cookie_header_as_the_view_does(app, oauth, api, cookie, handed_over):
    """The Cookie header as sent (the test client's own jar would replace it): the view's redirect each time."""
    from sso.cookies import COOKIE_NAME

    client = app.test_client(use_cookies=False)
    headers = dict(BROWSER)
    if cookie is not None:
        headers["Cookie"] = cookie.format(name=COOKIE_NAME, live=api.create("42")["token"])
    params = oauth.authorize_params()
    with _Counting(_fast_path(app)) as flask_side:
        fast = client.get("/authorize", query_string=params, headers=headers)
    slow = _through_flask(app, lambda: client.get("/authorize", query_string=params, headers=headers))
    assert flask_side.calls == handed_over
    assert ("code" in _query(fast)) == (cookie is not None and "live" in cookie)
    assert ("return_to" in _query(fast)) == (cookie is None or "live" not in cookie)
    _same_redirect(fast, slow, differing=("code",))


def test_a_failed_authorize_is_counted_and_answered_by_the_view_once(app, client, oauth, services):
    """An error redirected to the client: one service call, the view's redirect, counted by the rate limit."""
    oauth.login("42")
    refused = oauth.authorize_params(code_challenge_method="plain")  # PKCE plain: a redirected error
    calls = []
    real = services.authorization.authorize

    def counting(params: Any, cookie: Any) -> Any:
        calls.append(cookie is not None)
        return real(params, cookie)

    counted = []
    real_failed = services.limiter.failed

    def failed(limit: str, address: Any) -> Any:
        counted.append(limit)
        return real_failed(limit, address)

    services.authorization.authorize, services.limiter.failed = counting, failed
    try:
        with _Counting(_fast_path(app)) as flask_side:
            plain = client.get("/authorize", query_string=refused, headers=BROWSER)
    finally:
        del services.authorization.authorize, services.limiter.failed
    assert calls == [True] and flask_side.calls == 1 and counted == ["authorize"]
    assert plain.status_code == 302 and _query(plain)["error"] == ["invalid_request"]
    _same_redirect(plain, _through_flask(app, lambda: client.get("/authorize", query_string=refused, headers=BROWSER)))


@pytest.mark.parametrize(
    ("overrides", "error"),
    [({"client_id": "nobody"}, "invalid_client"), ({"redirect_uri": "http://evil.test/cb"}, "invalid_request")],
)
def test_errors_shown_to_the_user_are_raised_by_the_view_once(app, client, oauth, services, overrides, error):
    """An unknown client or redirect URI is never redirected: the view raises what the fast path's call raised."""
    oauth.login("42")
    calls = []
    real = services.authorization.authorize

    def counting(params: Any, cookie: Any) -> Any:
        calls.append(1)
        return real(params, cookie)

    services.authorization.authorize = counting
    try:
        with _Counting(_fast_path(app)) as flask_side:
            fast = client.get("/authorize", query_string=oauth.authorize_params(**overrides), headers=BROWSER)
    finally:
        del services.authorization.authorize
    assert calls == [1] and flask_side.calls == 1
    assert fast.status_code in (400, 401) and fast.get_json()["error"] == error
    assert "Location" not in fast.headers
    _same(fast, _through_flask(app, lambda: client.get(
        "/authorize", query_string=oauth.authorize_params(**overrides), headers=BROWSER)))  # fmt: skip


def test_other_authorize_requests_reach_the_view(app, client, oauth):
    """POST (a form), HEAD and an oversized body are the view's; so is a query it parses itself."""
    oauth.login("42")
    with _Counting(_fast_path(app)) as flask_side:
        posted = client.post("/authorize", data=oauth.authorize_params(), headers=BROWSER)
        head = client.head("/authorize", query_string=oauth.authorize_params(), headers=BROWSER)
        big = client.get("/authorize", query_string=oauth.authorize_params(), headers=BROWSER,
                         data=b"x" * 70_000, content_type="text/plain")  # fmt: skip
    assert flask_side.calls == 3
    assert posted.status_code == 302 and "code" in _query(posted)
    assert head.status_code == 302 and head.data == b""
    assert big.status_code == 413 and big.get_json()["error"] == "invalid_request"


def test_the_query_string_is_read_as_werkzeug_reads_it(app, client, oauth):
    """Escapes, '+', blank values and a repeated parameter give the view's answer."""
    oauth.login("42")
    params = oauth.authorize_params()
    escaped = "&".join(f"{k}={''.join(f'%{b:02X}' for b in v.encode())}" for k, v in params.items())
    cases = [
        escaped + "&state=",  # state repeated (one blank): refused as repeated
        escaped.replace("state=", "ignored=") + "&state=a+b%20c",
        escaped + "&unknown&x=%FF",  # an unknown parameter with no value, an escape of a non-UTF-8 byte
    ]
    for query in cases:
        fast = client.get(f"/authorize?{query}", headers=BROWSER)
        slow = _through_flask(app, lambda q=query: client.get(f"/authorize?{q}", headers=BROWSER))
        _same_redirect(fast, slow, differing=("code",))
    assert _query(client.get(f"/authorize?{cases[1]}"))["state"] == ["a b c"]
    assert "error" in _query(client.get(f"/authorize?{cases[0]}"))


def test_authorize_access_log_line_and_metrics_are_the_views(app, client, oauth, log_lines):  # noqa: F811
    oauth.login("808")
    labels = {"endpoint": "/authorize", "method": "GET", "status": "302"}
    before = REGISTRY.get_sample_value("sso_http_requests_total", labels) or 0.0
    client.get("/authorize", query_string=oauth.authorize_params(), headers=BROWSER)
    _through_flask(app, lambda: client.get("/authorize", query_string=oauth.authorize_params(), headers=BROWSER))
    assert REGISTRY.get_sample_value("sso_http_requests_total", labels) == before + 2
    fast, slow = [line for line in log_lines() if line["logger"] == "sso.access" and line["path"] == "/authorize"]
    for line in (fast, slow):
        line.pop("ts"), line.pop("duration_ms")
    assert fast == slow and list(fast) == list(slow)
    assert fast["user_id"] == "808" and fast["status"] == 302 and fast["method"] == "GET"
    assert "xyz-state" not in json.dumps(fast) and "?" not in fast["path"]  # no query in the line


@pytest.mark.parametrize(
    "headers",
    [{"Host": "x" * 64 + ".example"}, {"Host": "a..b"}, {"Connection": "Upgrade", "Upgrade": "websocket"}],
    ids=["long-label", "empty-label", "websocket"],
)
def test_what_flasks_routing_refuses_is_refused_by_it(app, oauth, api, headers):
    """A Host Werkzeug cannot encode, or a WebSocket upgrade: Flask's 400 before any view, never a code."""
    client = app.test_client(use_cookies=False)
    session = api.create("42")
    from sso.cookies import COOKIE_NAME

    browser = {**headers, "Cookie": f"{COOKIE_NAME}={session['token']}"}
    with _Counting(_fast_path(app)) as flask_side:
        authorized = client.get("/authorize", query_string=oauth.authorize_params(), headers=browser)
        validated = _validate(client, {"token_hash": session["session_id_hash"]}, headers={**HEADERS, **headers})
    assert flask_side.calls == 2
    for response in (authorized, validated):
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_request"
        assert "Location" not in response.headers


def test_a_forwarded_host_is_routed_as_flask_routes_it(settings, clock, redis):
    """Behind ProxyFix the Host is the proxy's X-Forwarded-Host; a good one is answered here, and remembered."""
    from app import create_app
    from tests.conftest import Api

    app = create_app(settings, clock=clock, trusted_proxies=1)
    app.config["TESTING"] = True
    client = app.test_client(use_cookies=False)
    session = Api(client, {"Authorization": f"Service {SERVICE_SECRET}"}).create("42")
    body = {"token_hash": session["session_id_hash"]}
    forwarded = {**HEADERS, "X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    with _Counting(_fast_path(app)) as flask_side:
        bad = _validate(client, body, headers={**forwarded, "X-Forwarded-Host": "x" * 64 + ".example"})
        good = [_validate(client, body, headers={**forwarded, "X-Forwarded-Host": "sso.example"}) for _ in range(2)]
    assert flask_side.calls == 1
    assert bad.status_code == 400 and all(r.get_json()["valid"] is True for r in good)
    assert ("sso.example", "https") in _fast_path(app)._routed_hosts
