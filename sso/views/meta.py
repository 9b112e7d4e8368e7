"""Discovery, JWKS, the OpenAPI document and health: public, cheap, precomputed where possible."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from sso import metrics
from sso.http import no_store, require_service, services
from sso.store import REDIS_ERRORS

bp = Blueprint("meta", __name__)
PUBLIC_CACHE = "public, max-age=3600"


def _precomputed(body: bytes, cache_control: str = PUBLIC_CACHE) -> Response:
    """Serve bytes built once at start; readable from any origin (no credentials)."""
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = cache_control
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    return _precomputed(services().discovery_json)


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    """Cached for SSO_JWKS_MAX_AGE: the key rotation procedure waits that long before a new key signs."""
    svc = services()
    return _precomputed(svc.keys.jwks_json, f"public, max-age={svc.settings.jwks_max_age}")


@bp.get("/openapi.json")
def openapi() -> Response:
    return _precomputed(services().openapi_json)


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
