"""The SSO cookie: HttpOnly, SameSite=Lax, Path=/, Secure and Domain per config."""

from __future__ import annotations

from flask import Request
from werkzeug.wrappers import Response as BaseResponse

from config.settings import Settings

COOKIE_NAME = "__flx_sso_session"


def set_sso_cookie(response: BaseResponse, settings: Settings, token: str, max_age: int) -> None:
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


def clear_sso_cookie(response: BaseResponse, settings: Settings) -> None:
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        domain=settings.cookie_domain or None,
        secure=settings.cookie_secure,
        httponly=True,
        samesite="Lax",
    )


def sso_cookie(request: Request) -> str | None:
    value = request.cookies.get(COOKIE_NAME)
    return value if value and len(value) <= 512 else None
