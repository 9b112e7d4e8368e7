"""The SSO cookie: HttpOnly, SameSite=Lax, Path=/, Secure and Domain per config."""

from __future__ import annotations

from flask import Request
from werkzeug.wrappers import Response as BaseResponse

from config.settings import Settings

COOKIE_NAME = "__flx_sso_session"


def set_sso_cookie(response: BaseResponse, settings: Settings, token: str, max_age: int) -> None:
    _expire_host_only_leftover(response, settings)
    response.set_cookie(
        COOKIE_NAME,
        token,
        max_age=max(0, max_age),
        path="/",
        domain=settings.cookie_domain or None,
        secure=settings.cookie_secure,
        httponly=True,
        samesite="Lax",
    )


def _expire_host_only_leftover(response: BaseResponse, settings: Settings) -> None:
    """With SSO_COOKIE_DOMAIN set, also expire a host-only cookie left from before it was set.

    Two SSO cookies count as none (``sso_cookie``), so a browser still holding
    the old host-only one would have no SSO session until it expired.
    """
    if settings.cookie_domain:
        response.delete_cookie(COOKIE_NAME, path="/", secure=settings.cookie_secure, httponly=True, samesite="Lax")


def clear_sso_cookie(response: BaseResponse, settings: Settings) -> None:
    _expire_host_only_leftover(response, settings)
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        domain=settings.cookie_domain or None,
        secure=settings.cookie_secure,
        httponly=True,
        samesite="Lax",
    )


def sso_cookie(request: Request) -> str | None:
    """The SSO cookie's token, or None: absent, oversized, or sent more than once.

    A browser sends every cookie whose domain and path match, the most specific
    path first, and cannot tell us which one we set. A sibling subdomain can
    plant its own ``__flx_sso_session`` (wider Domain, narrower Path) ahead of
    ours; trusting the first would log the user into the planter's session
    (login CSRF), trusting the last is as easy to defeat. So two are none.
    """
    values = request.cookies.getlist(COOKIE_NAME)
    if len(values) != 1:
        return None
    value = values[0]
    return value if value and len(value) <= 512 else None
