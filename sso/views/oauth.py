"""OAuth 2.0 / OpenID Connect endpoints: /authorize, /token, /userinfo, /introspect, /revoke."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Request, Response, jsonify, request
from werkzeug.wrappers import Response as BaseResponse

from sso import errors, ratelimit
from sso.authorization import AuthorizationService, AuthorizeOutcome
from sso.cookies import sso_cookie
from sso.grants import GrantService
from sso.http import (
    apply_cors,
    authenticate_service,
    client_address,
    count_failure,
    handed_over,
    no_store,
    note_user,
    rate_limited,
    redirect_to,
    require_service,
    service_credentials,
    services,
    use_schema,
)
from sso.schemas import TokenInputSchema, TokenSchema
from sso.tokens import TokenService

bp = Blueprint("oauth", __name__)
BROWSER_ENDPOINTS = frozenset({"oauth.token", "oauth.userinfo", "oauth.revoke"})


@bp.after_request
def _cors(response: Response) -> Response:
    """Browser apps call /token, /userinfo and /revoke cross-origin, without cookies."""
    if request.endpoint in BROWSER_ENDPOINTS:
        apply_cors(response, services().settings.app_origins, credentials=False)
    return response


@bp.route("/authorize", methods=["GET", "POST"])
@rate_limited(ratelimit.AUTHORIZE)
def authorize() -> BaseResponse:
    outcome = handed_over(request.environ) or authorization(services().authorization, request)
    if outcome.user_id is not None:
        note_user(outcome.user_id)
    if outcome.failed:
        count_failure(ratelimit.AUTHORIZE)
    return no_store(redirect_to(outcome.location, 302))


def authorization(service: AuthorizationService, req: Request) -> AuthorizeOutcome:
    """Where /authorize sends the browser, for the view and sso/fastpath.py (GET only there).

    HEAD is GET without the body (RFC 9110 §9.3.2): it reads the query too."""
    params = (req.form if req.method == "POST" else req.args).to_dict(flat=False)
    return service.authorize(params, sso_cookie(req))


@bp.post("/token")
@rate_limited(ratelimit.TOKEN)
@use_schema(TokenSchema, location="form")
def token(data: dict[str, Any]) -> Response:
    body, user_id = issuance(services().grants, data)
    note_user(user_id)
    return no_store(jsonify(body))


def issuance(grants: GrantService, data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The answer to /token and its user, for the view and sso/fastpath.py."""
    issued = grants.token(data)
    return issued.to_json(), issued.user_id


def _bearer_token() -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise errors.BearerRequired()
    if not value.strip():
        raise errors.InvalidToken("A Bearer access token is required.")
    return value.strip()


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    claims = services().tokens.userinfo(_bearer_token())
    note_user(claims["sub"])
    return no_store(jsonify(claims))


@bp.post("/introspect")
@require_service
@use_schema(TokenInputSchema, location="form")
def introspect(data: dict[str, Any]) -> Response:
    body, _ = introspection(services().tokens, data)
    return no_store(jsonify(body))


def introspection(tokens: TokenService, data: dict[str, Any]) -> tuple[dict[str, Any], None]:
    """The answer to /introspect (no user noted), for the view and sso/fastpath.py."""
    return tokens.introspect(data["token"], data["token_type_hint"]), None


@bp.post("/revoke")
@use_schema(TokenInputSchema, location="form")
def revoke(data: dict[str, Any]) -> Response:
    """A client revokes its own tokens by ``client_id``; only ``Authorization: Service`` selects the
    service branch, so a client library's ``Basic`` header is not a failed service login."""
    svc = services()
    client_id: str | None = None
    if service_credentials() is not None:
        authenticate_service()
    elif svc.clients.known(data["client_id"]):
        client_id = data["client_id"]
    else:
        raise errors.InvalidClient("Unknown client_id.")
    caller = f"client {client_id}" if client_id is not None else f"service {client_address()}"
    svc.tokens.revoke(data["token"], data["token_type_hint"], client_id, actor=caller)
    return no_store(Response(status=200))
