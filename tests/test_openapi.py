"""The OpenAPI document (sso/openapi.py): served, checked in, valid, and covering every route."""

from __future__ import annotations

import json
import re
from pathlib import Path

import schemathesis

from sso.openapi import openapi_document, render

CHECKED_IN = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


def test_served_document_is_public_cacheable_json(client):
    """GET /openapi.json: precomputed JSON, cacheable, readable from any origin."""
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.get_json()["openapi"] == "3.1.0"


def test_checked_in_copy_equals_what_the_app_serves(client):
    """docs/openapi.json cannot drift: run `make openapi` after changing a schema or an endpoint."""
    assert json.loads(CHECKED_IN.read_text()) == client.get("/openapi.json").get_json()
    assert CHECKED_IN.read_text() == render(), "docs/openapi.json is stale: run `make openapi`"


def test_document_is_valid_openapi():
    """The document validates against the OpenAPI 3.1 meta-schema."""
    schemathesis.openapi.from_dict(openapi_document()).validate()


def _routes(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        found |= {(method.lower(), path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return found


def test_every_route_is_documented_and_nothing_else(app):
    """The document lists exactly the app's routes and methods."""
    documented = {(method, path) for path, item in openapi_document()["paths"].items() for method in item}
    assert documented == _routes(app)


def test_every_operation_documents_its_errors_with_the_error_shape():
    """Every 4xx/5xx response of every operation is the {"error", "error_description"} object."""
    doc = openapi_document()
    error = doc["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "error_description"] and error["additionalProperties"] is False
    assert {"invalid_request", "invalid_grant", "invalid_client", "rate_limited"} <= set(
        error["properties"]["error"]["enum"]
    )
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            statuses = {int(s) for s in operation["responses"]}
            assert any(s < 400 for s in statuses), (method, path)
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path != "/_health":
                    assert response["$ref"].startswith("#/components/responses/"), (method, path, status)


def test_security_schemes_and_request_bodies():
    """Service header, Bearer and cookie schemes; JSON and form bodies from the marshmallow schemas."""
    doc = openapi_document()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["service"] == {**schemes["service"], "type": "apiKey", "in": "header", "name": "Authorization"}
    assert schemes["bearer"]["scheme"] == "bearer" and schemes["ssoCookie"]["in"] == "cookie"
    paths = doc["paths"]
    assert paths["/session/create"]["post"]["security"] == [{"service": []}]
    assert "application/json" in paths["/session/create"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in paths["/token"]["post"]["requestBody"]["content"]
    create = doc["components"]["schemas"]["CreateSession"]
    assert create["required"] == ["user_id"] and create["additionalProperties"] is False
    assert create["properties"]["user_id"]["pattern"] == r"^[A-Za-z0-9_-]{1,64}$(?!\n)"
    token = doc["components"]["schemas"]["Token"]
    assert token["properties"]["code_verifier"] == {"type": "string", "maxLength": 256}
    assert "429" in paths["/token"]["post"]["responses"]
    assert "Retry-After" in doc["components"]["responses"]["RateLimited"]["headers"]
