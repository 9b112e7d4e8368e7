"""Hostile input on every documented endpoint: a JSON 4xx (or the endpoint's ordinary answer), never a 5xx.

Each operation of docs/openapi.json gets each input below, aimed at its real
parameter names in the query string, a form body and a JSON body at once:
non-UTF-8 bytes, null bytes, 10 000-character values, repeated parameters,
JSON nested 1 000 deep, wrong content types, and oversized or undecodable
headers and cookies. The service secret is sent, so service endpoints parse
the input instead of stopping at authentication.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from app import create_app
from sso.cookies import COOKIE_NAME
from sso.openapi import openapi_document
from tests.conftest import SERVICE_SECRET, make_settings

DOC = openapi_document()
SERVICE = f"Service {SERVICE_SECRET}"
NO_BODY_OK = {204, 302, 303}  # answers that carry no JSON body by design
TRACE_MARKERS = ("Traceback (most recent call last)", '.py", line ')


def _names(operation: dict[str, Any]) -> list[str]:
    """The operation's own parameter and body field names, so hostile values reach real fields."""
    names = [p["name"] for p in operation.get("parameters", []) if p["in"] != "path"]
    for media in operation.get("requestBody", {}).get("content", {}).values():
        ref = media["schema"].get("$ref", "")
        names += list(DOC["components"]["schemas"][ref.rsplit("/", 1)[-1]].get("properties", {})) if ref else []
    return sorted(set(names)) or ["token"]


OPERATIONS = [
    (method.upper(), path, _names(operation))
    for path, item in DOC["paths"].items()
    for method, operation in item.items()
]


def _form(names: list[str], value: bytes) -> bytes:
    return b"&".join(name.encode() + b"=" + value for name in names)


def _json(names: list[str], raw_value: bytes) -> bytes:
    return json.dumps({name: "@@" for name in names}).encode().replace(b'"@@"', raw_value)


# Each variant: the path parameter to use, and the request's query string, headers and body.
VARIANTS: dict[str, dict[str, Any]] = {
    "non-utf8-json": {
        "user_id": "%FF%FE",
        "query": lambda n: _form(n, b"%FF%FE%C0%AF"),
        "type": "application/json",
        "body": lambda n: _json(n, b'"\xff\xfe\xc0\xaf"'),
    },
    "non-utf8-form": {
        "user_id": "%C3%28",
        "query": lambda n: _form(n, b"\xff\xfe"),
        "type": "application/x-www-form-urlencoded",
        "body": lambda n: _form(n, b"\xff\xfe\xc0\xaf"),
    },
    "null-bytes": {
        "user_id": "a%00b",
        "query": lambda n: _form(n, b"a%00b"),
        "type": "application/json",
        "body": lambda n: _json(n, b'"a\\u0000b"'),
    },
    "null-bytes-form": {
        "user_id": "%00",
        "query": lambda n: _form(n, b"%00"),
        "type": "application/x-www-form-urlencoded",
        "body": lambda n: _form(n, b"%00%00"),
    },
    "10000-chars-json": {
        "user_id": "a" * 10_000,
        "query": lambda n: _form(n, b"a" * 10_000),
        "type": "application/json",
        "body": lambda n: _json(n, b'"' + b"a" * 10_000 + b'"'),
    },
    "10000-chars-form": {
        "user_id": "4" * 10_000,
        "query": lambda n: _form(n, b"%41" * 10_000)[:30_000],
        "type": "application/x-www-form-urlencoded",
        "body": lambda n: _form(n, b"b" * 10_000),
    },
    "repeated-params": {
        "user_id": "42",
        "query": lambda n: _form(n + n, b"fluxer"),
        "type": "application/x-www-form-urlencoded",
        "body": lambda n: _form(n + n + n, b"x"),
    },
    "repeated-json-keys": {
        "user_id": "42",
        "query": lambda n: b"",
        "type": "application/json",
        "body": lambda n: b"{" + b",".join(b'"%s": "1", "%s": "2"' % (k.encode(), k.encode()) for k in n) + b"}",
    },
    "nested-json-1000": {
        "user_id": "42",
        "query": lambda n: b"",
        "type": "application/json",
        "body": lambda n: b"[" * 1000 + b"]" * 1000,
    },
    "nested-json-in-field": {
        "user_id": "42",
        "query": lambda n: b"",
        "type": "application/json",
        "body": lambda n: _json(n, b"[" * 1000 + b"]" * 1000),
    },
    "text-plain": {"user_id": "42", "query": lambda n: b"", "type": "text/plain", "body": lambda n: _json(n, b'"x"')},
    "multipart": {
        "user_id": "42",
        "query": lambda n: b"",
        "type": "multipart/form-data; boundary=zz",
        "body": lambda n: b'--zz\r\nContent-Disposition: form-data; name="token"\r\n\r\nx\r\n--zz--\r\n',
    },
    "xml": {
        "user_id": "42",
        "query": lambda n: b"",
        "type": "application/xml",
        "body": lambda n: b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY b 'c'>]><a>&b;</a>",
    },
    "json-typed-form": {
        "user_id": "42",
        "query": lambda n: b"",
        "type": "application/json",
        "body": lambda n: _form(n, b"x"),
    },
    "form-typed-json": {
        "user_id": "42",
        "query": lambda n: b"",
        "type": "application/x-www-form-urlencoded",
        "body": lambda n: _json(n, b'"x"'),
    },
    "utf16-json": {
        "user_id": "42",
        "query": lambda n: b"",
        "type": "application/json; charset=utf-16",
        "body": lambda n: _json(n, b'"x"').decode().encode("utf-16"),
    },
    "bad-content-type": {
        "user_id": "42",
        "query": lambda n: b"",
        "type": 'application/json; charset=\xff; boundary="',
        "body": lambda n: b"{}",
    },
}


@pytest.fixture(scope="module")
def hostile_client(redis_url, key_pair):
    """One app for the whole module (hundreds of requests), rate limits off so every input is evaluated."""
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    limits = {f"rate_limit_{n}_failures": None for n in ("service_auth", "token", "authorize")}
    app = create_app(make_settings(redis_url, prefix, key_pair, **limits))
    yield app.test_client()
    services = app.extensions["sso"]
    keys = list(services.redis.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        services.redis.delete(*keys)
    services.redis.close()


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("method, path, names", OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_hostile_input_never_breaks_an_endpoint(hostile_client, method, path, names, variant):
    """Every endpoint answers hostile input with a JSON 4xx or its ordinary answer; never a 5xx or a trace."""
    spec = VARIANTS[variant]
    url = path.replace("{user_id}", spec["user_id"])
    response = hostile_client.open(
        url,
        method=method,
        query_string=spec["query"](names).decode("latin-1"),  # WSGI carries the raw bytes as latin-1
        data=spec["body"](names),
        headers={"Authorization": SERVICE, "Content-Type": spec["type"], "Origin": "http://app.test"},
    )
    assert_sane(response)


HEADER_ATTACKS = {
    "oversized-bearer": {"Authorization": "Bearer " + "a" * 100_000},
    "oversized-service": {"Authorization": "Service " + "a" * 100_000},
    "latin1-authorization": {"Authorization": "Service \xff\xfe\xe9"},
    "oversized-cookie": {"Cookie": f"{COOKIE_NAME}=" + "a" * 100_000},
    "undecodable-cookie": {"Cookie": f"{COOKIE_NAME}=\xff\xfe; {COOKIE_NAME}=x"},
    "many-cookies": {"Cookie": "; ".join(f"c{i}=v" for i in range(5000))},
    "oversized-origin": {"Origin": "http://" + "a" * 50_000},
}


@pytest.mark.parametrize("attack", list(HEADER_ATTACKS))
@pytest.mark.parametrize("method, path, names", OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_hostile_headers_never_break_an_endpoint(hostile_client, method, path, names, attack):
    """Oversized or undecodable Authorization, Cookie and Origin headers: refused or ignored, never a 5xx."""
    response = hostile_client.open(path.replace("{user_id}", "42"), method=method, headers=HEADER_ATTACKS[attack])
    assert_sane(response)


def assert_sane(response) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code < 500, text
    assert not any(marker in text for marker in TRACE_MARKERS), text
    if response.status_code == 200 and response.mimetype == "text/plain":  # /metrics: Prometheus text
        assert text.startswith("# HELP"), text[:200]
        return
    if response.status_code in NO_BODY_OK or (response.status_code == 200 and not text):
        return
    assert response.mimetype == "application/json", (response.status_code, text[:200])
    body = json.loads(text)
    if response.status_code >= 400:
        assert set(body) == {"error", "error_description"}, body
