"""Scopes and the claims each releases (OpenID Connect Core §5.4)."""

from __future__ import annotations

from typing import Any

from sso.errors import InvalidScope

SUPPORTED = ("openid", "profile", "email")
DEFAULT = "openid"
PROFILE_CLAIMS = (
    "name", "family_name", "given_name", "middle_name", "nickname", "preferred_username", "profile",
    "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at",
)  # fmt: skip
EMAIL_CLAIMS = ("email", "email_verified")
RELEASED_BY = {"profile": PROFILE_CLAIMS, "email": EMAIL_CLAIMS}


def parse(scope: str | None) -> str:
    """A space-separated scope in canonical order; unknown scopes are invalid_scope."""
    if scope is None or not scope.strip():
        return DEFAULT
    requested = scope.split()
    unknown = [s for s in requested if s not in SUPPORTED]
    if unknown:
        raise InvalidScope(f"Unknown scope: {unknown[0][:64]}.")
    return " ".join(s for s in SUPPORTED if s in requested)


def released_claims(scope: str, claims: dict[str, Any]) -> dict[str, Any]:
    """The session claims that the granted scope allows."""
    granted = scope.split()
    allowed = {name for s in granted for name in RELEASED_BY.get(s, ())}
    return {k: v for k, v in claims.items() if k in allowed}
