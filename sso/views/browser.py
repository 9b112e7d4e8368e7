"""Browser-facing session endpoints: /session/set-cookie, POST and GET /logout.

Both are called by Fluxer apps from ``SSO_APP_ORIGINS`` with credentials, so
they answer CORS preflights for exactly those origins. POST /logout refuses
any other origin: logging a user out is a state change a third-party page
must not be able to trigger (logout CSRF).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify, request
from werkzeug.wrappers import Response as BaseResponse

from sso import errors, events
from sso.cookies import clear_sso_cookie, set_sso_cookie, sso_cookie
from sso.http import apply_cors, no_store, redirect_to, services, use_schema
from sso.schemas import EndSessionSchema, LogoutSchema, SetCookieSchema

bp = Blueprint("browser", __name__)


@bp.after_request
def _cors(response: Response) -> Response:
    """CORS on every answer of this blueprint, Flask's automatic OPTIONS included."""
    return apply_cors(response, services().settings.app_origins, credentials=True)


@bp.post("/session/set-cookie")
@use_schema(SetCookieSchema)
def set_cookie(data: dict[str, Any]) -> Response:
    """Login CSRF is already stopped by the JSON content type (a preflight only app origins pass);
    a browser's Origin from anywhere else is refused outright as well."""
    svc = services()
    origin = request.headers.get("Origin")
    if origin is not None and origin not in _trusted_origins():
        raise errors.Forbidden("The cookie is set only for a Fluxer app origin.")
    session = svc.sessions.from_token(data["token"])
    if session is None:
        raise errors.Unauthorized("The session token is invalid or expired.")
    response = no_store(Response(status=204))
    set_sso_cookie(response, svc.settings, data["token"], session.expires_at - int(svc.clock()))
    return response


def _trusted_origins() -> tuple[str, ...]:
    """The app origins and the issuer's own origin."""
    settings = services().settings
    issuer = urlsplit(settings.issuer)
    return (*settings.app_origins, f"{issuer.scheme}://{issuer.netloc}")


def _request_origin() -> str | None:
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin
    referer = urlsplit(request.headers.get("Referer", ""))
    return f"{referer.scheme}://{referer.netloc}" if referer.scheme and referer.netloc else None


@bp.post("/logout")
@use_schema(LogoutSchema, location="values")
def logout(data: dict[str, Any]) -> BaseResponse:
    """Clears the cookie (and ends sessions on request); 303 to an allowed ``post_logout_redirect_uri``."""
    svc = services()
    if _request_origin() not in _trusted_origins():
        raise errors.Forbidden("Logout is accepted only from a Fluxer app origin.")
    location = svc.end_session.redirect_after_logout(data)
    token = sso_cookie(request)
    session = svc.sessions.from_token(token) if token else None
    if session is not None and data["invalidate"] == "session":
        svc.sessions.invalidate(session.user_id, [session.session_id_hash], reason=events.LOGOUT, actor="logout")
    elif session is not None and data["invalidate"] == "all":
        svc.sessions.invalidate_all(session.user_id, actor="logout")
    response = redirect_to(location, 303) if location else Response(status=204)
    clear_sso_cookie(response, svc.settings)
    return no_store(response)


@bp.get("/logout")
@use_schema(EndSessionSchema, location="query")
def end_session(data: dict[str, Any]) -> BaseResponse:
    """OIDC RP-Initiated Logout: ends at most the cookie's own session (sso/logout.py)."""
    svc = services()
    outcome = svc.end_session.end_session(data, sso_cookie(request))
    response = redirect_to(outcome.redirect_to, 303) if outcome.redirect_to else jsonify(logged_out=outcome.ended)
    if outcome.ended:
        clear_sso_cookie(response, svc.settings)
    return no_store(response)
