"""The service API for API instances: /session/* (docs/contract.md, Endpoints)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from marshmallow import ValidationError

from sso import errors, events
from sso.http import client_address, no_store, note_user, require_service, services, use_schema
from sso.schemas import (
    CreateSessionSchema,
    InvalidateAllSchema,
    InvalidateSchema,
    SessionStatusSchema,
    UserIdSchema,
    ValidateSessionSchema,
)
from sso.sessions import SessionService


def _caller() -> str:
    """Who ends sessions through the service API, for the audit line: the API instance's address."""
    return f"service {client_address()}"


bp = Blueprint("session", __name__, url_prefix="/session")
_user_id_schema = UserIdSchema()


@bp.post("/create")
@require_service
@use_schema(CreateSessionSchema)
def create(data: dict[str, Any]) -> tuple[Response, int]:
    note_user(data["user_id"])
    token, session = services().sessions.create(
        data["user_id"],
        client_ip=data["client_ip"],
        user_agent=data["user_agent"],
        platform=data["platform"],
        claims=data["claims"],
    )
    body = {
        "token": token,
        **{
            k: v
            for k, v in session.to_json().items()
            if k in ("session_id_hash", "user_id", "created_at", "expires_at")
        },
    }
    return no_store(jsonify(body)), 201


def validation(sessions: SessionService, data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The answer to /session/validate and its user, for the view and sso/fastpath.py."""
    session = sessions.validate(data["token_hash"])
    if session is None:
        return {"valid": False}, None
    return {"valid": True, "session": session.to_json()}, session.user_id


@bp.post("/validate")
@require_service
@use_schema(ValidateSessionSchema)
def validate(data: dict[str, Any]) -> Response:
    """Not rate limited: ``valid: false`` is an honest answer for a logged-out user, and the hashes
    of anonymous visitors' tokens pass through the calling API instance (README, Rate limits)."""
    body, user_id = validation(services().sessions, data)
    if user_id is not None:
        note_user(user_id)
    return no_store(jsonify(body))


@bp.get("/list/<user_id>")
@require_service
def list_sessions(user_id: str) -> Response:
    try:
        _user_id_schema.load({"user_id": user_id})
    except ValidationError:
        raise errors.InvalidRequest("user_id: must be 1-64 characters of A-Z a-z 0-9 _ -") from None
    note_user(user_id)
    sessions = services().sessions.list_for_user(user_id)
    return no_store(jsonify(sessions=[s.to_json() for s in sessions]))


@bp.post("/status")
@require_service
@use_schema(SessionStatusSchema)
def status(data: dict[str, Any]) -> Response:
    """Liveness of up to 100 sessions; no activity, no rate-limit counting (SPEC.md, Endpoints)."""
    return no_store(jsonify(sessions=services().sessions.statuses(data["session_id_hashes"])))


@bp.post("/invalidate")
@require_service
@use_schema(InvalidateSchema)
def invalidate(data: dict[str, Any]) -> Response:
    note_user(data["user_id"])
    ended = services().sessions.invalidate(
        data["user_id"], data["session_id_hashes"], reason=events.INVALIDATED, actor=_caller()
    )
    return no_store(jsonify(invalidated=ended))


@bp.post("/invalidate-all")
@require_service
@use_schema(InvalidateAllSchema)
def invalidate_all(data: dict[str, Any]) -> Response:
    note_user(data["user_id"])
    ended = services().sessions.invalidate_all(data["user_id"], data["except_session_id_hashes"], actor=_caller())
    return no_store(jsonify(invalidated=ended))
