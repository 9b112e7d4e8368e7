"""Discovery, JWKS, the OpenAPI document and health: public, cheap, precomputed where possible."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from sso import metrics
from sso.http import no_store, require_service, services
from sso.store import REDIS_ERRORS

bp = Blueprint("meta", __name__)
PUBLIC_CACHE = "public, max-age=3600"
DISCOVERY, JWKS, OPENAPI = "/.well-known/openid-configuration", "/.well-known/jwks.json", "/openapi.json"


def _document(path: str) -> Response:
    """Bytes built once at start (app.py), readable from any origin (no credentials).

    sso/precomputed.py answers GET and HEAD of these paths before Flask, from the same
    Document; these routes give the other methods Flask's answers (405, OPTIONS)."""
    document = services().documents[path]
    return Response(document.body, headers=document.headers)


@bp.after_request
def public_preflight(response: Response) -> Response:
    """A browser's CORS preflight of a public document (a fetch that adds a header, such as
    X-Request-ID) is allowed from any origin, as the document itself is (no credentials)."""
    if request.method == "OPTIONS" and request.path in services().documents:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Methods"] = "GET, HEAD"
        response.headers["Access-Control-Allow-Headers"] = "*"
        response.headers["Access-Control-Max-Age"] = "86400"
    return response


@bp.get(DISCOVERY)
def discovery() -> Response:
    return _document(DISCOVERY)


@bp.get(JWKS)
def jwks() -> Response:
    """Cached for SSO_JWKS_MAX_AGE: the key rotation procedure waits that long before a new key signs."""
    return _document(JWKS)


@bp.get(OPENAPI)
def openapi() -> Response:
    return _document(OPENAPI)


@bp.get("/_health")
def health() -> tuple[Response, int]:
    try:
        services().store.check_writable()
    except REDIS_ERRORS:
        body = {"status": "unavailable", "error": "temporarily_unavailable",
                "error_description": "Redis does not take writes."}  # fmt: skip
        return no_store(jsonify(body)), 503
    return no_store(jsonify(status="ok")), 200


@bp.get("/metrics")
@require_service
def prometheus_metrics() -> Response:
    """Prometheus text for all workers; scrape with ``authorization: {type: Service, credentials: ...}``."""
    body, content_type = metrics.render(services().scrape_metrics)
    return no_store(Response(body, content_type=content_type))
