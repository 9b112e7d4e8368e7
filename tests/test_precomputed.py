"""Discovery, JWKS and the OpenAPI document are answered before Flask (sso/precomputed.py).

The answers must be exactly what the Flask views give (which are still there for
the other methods), counted in the request metrics, and nothing else on these
paths may be caught by the shortcut.
"""

from __future__ import annotations

import logging

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from sso.views import meta

PATHS = ("/.well-known/openid-configuration", "/.well-known/jwks.json", "/openapi.json")


def _flask_view_answer(app: Flask, path: str):
    """The same request answered by the Flask stack itself, skipping the shortcut."""
    shortcut = app.wsgi_app
    app.wsgi_app = shortcut.app  # type: ignore[attr-defined]
    try:
        return app.test_client().get(path, headers={"X-Request-ID": "same-id"})
    finally:
        app.wsgi_app = shortcut  # type: ignore[method-assign]


@pytest.mark.parametrize("path", PATHS)
def test_answer_is_what_the_flask_view_answers(app, client, path):
    fast = client.get(path, headers={"X-Request-ID": "same-id"})
    slow = _flask_view_answer(app, path)
    assert fast.status_code == slow.status_code == 200
    assert fast.data == slow.data and fast.data.startswith(b"{")
    for header in ("Content-Type", "Content-Length", "Cache-Control", "Access-Control-Allow-Origin", "X-Request-ID"):
        assert fast.headers[header] == slow.headers[header], header


def test_jwks_max_age_is_the_configured_one(client, settings):
    response = client.get("/.well-known/jwks.json")
    assert response.headers["Cache-Control"] == f"public, max-age={settings.jwks_max_age}"
    assert client.get("/.well-known/openid-configuration").headers["Cache-Control"] == meta.PUBLIC_CACHE


def test_request_id_echoed_when_sane_replaced_when_hostile(client):
    assert client.get(PATHS[0], headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    first, second = (client.get(PATHS[0]).headers["X-Request-ID"] for _ in range(2))
    assert len(first) == 32 and first != second
    hostile = client.get(PATHS[0], headers={"X-Request-ID": "a b" + "x" * 200}).headers["X-Request-ID"]
    assert len(hostile) == 32 and " " not in hostile


def test_head_has_the_length_and_no_body(client):
    get, head = client.get(PATHS[1]), client.head(PATHS[1])
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(len(get.data))


def test_other_methods_and_paths_reach_flask(client):
    """POST is Flask's 405 JSON with Allow; OPTIONS is Flask's; a near-miss path is a JSON 404."""
    post = client.post(PATHS[0])
    assert post.status_code == 405 and post.get_json()["error"] == "method_not_allowed"
    assert "GET" in post.headers["Allow"]
    assert client.options(PATHS[1]).status_code == 200
    for near in (PATHS[1] + "/", "/.well-known/JWKS.json", "/.well-known/jwks.json.bak"):
        missing = client.get(near)
        assert missing.status_code == 404 and missing.get_json()["error"] == "not_found", near


@pytest.mark.parametrize("path", PATHS)
def test_cors_preflight_of_a_public_document_is_allowed_from_any_origin(client, path):
    """A cross-origin fetch that adds a header is preflighted; the public documents allow it."""
    preflight = client.options(
        path,
        headers={
            "Origin": "https://elsewhere.test",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-request-id",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "*"
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    health = client.options("/_health", headers={"Origin": "https://elsewhere.test"})
    assert "Access-Control-Allow-Origin" not in health.headers


@pytest.mark.parametrize("path", PATHS)
def test_a_body_over_the_limit_is_refused_here_too(client, path):
    """The documents never read a body, yet one over 64 KiB is 413 (sized or chunked); a small one is served."""
    big = client.get(path, data=b"x" * 70_000)
    chunked = client.get(path, data=b"x" * 70_000, headers={"Transfer-Encoding": "chunked"},
                         environ_overrides={"wsgi.input_terminated": True})  # as gunicorn passes it  # fmt: skip
    for response in (big, chunked):
        assert response.status_code == 413 and response.get_json()["error"] == "invalid_request"
    small = client.get(path, data=b"x" * 1000, headers={"Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})  # fmt: skip
    assert small.status_code == 200 and small.data == client.get(path).data


def _count(path: str, method: str) -> float:
    labels = {"endpoint": path, "method": method, "status": "200"}
    return REGISTRY.get_sample_value("sso_http_requests_total", labels) or 0.0


def _observed(path: str) -> float:
    return REGISTRY.get_sample_value("sso_http_request_duration_seconds_count", {"endpoint": path}) or 0.0


def test_counted_in_the_request_metrics(client):
    before_get, before_head, timed = _count(PATHS[0], "GET"), _count(PATHS[0], "HEAD"), _observed(PATHS[0])
    for _ in range(3):
        client.get(PATHS[0])
    client.head(PATHS[0])
    assert _count(PATHS[0], "GET") == before_get + 3
    assert _count(PATHS[0], "HEAD") == before_head + 1
    assert _observed(PATHS[0]) == timed + 4


def test_no_access_log_line_for_the_documents_but_for_the_rest(client, caplog):
    with caplog.at_level(logging.INFO, logger="sso.access"):
        client.get(PATHS[0])
        client.get(PATHS[1])
        assert not [r for r in caplog.records if r.name == "sso.access"]
        client.post(PATHS[0])
        assert [getattr(r, "status", None) for r in caplog.records if r.name == "sso.access"] == [405]
