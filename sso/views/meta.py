"""Health (and, with OAuth, discovery and JWKS)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from redis.exceptions import RedisError

from sso.http import no_store, services

bp = Blueprint("meta", __name__)


@bp.get("/_health")
def health() -> tuple[Response, int]:
    try:
        services().store.ping()
    except RedisError:
        body = {"status": "unavailable", "error": "temporarily_unavailable", "error_description": "Redis is down."}
        return no_store(jsonify(body)), 503
    return no_store(jsonify(status="ok")), 200
