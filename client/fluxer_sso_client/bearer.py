"""RFC 6750 for a resource server, without a framework: read the header, answer errors.

Only the ``Authorization`` header is read (§2.1); tokens in query strings end up
in logs. A request without credentials gets a bare challenge (§3.1: no error
code); a malformed header ``invalid_request`` (400); a refused token
``invalid_token`` (401); a missing scope ``insufficient_scope`` (403) naming it.
Bodies are JSON like the service's own errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from fluxer_sso_client.errors import InsufficientScope, TokenError, VerificationUnavailable
from fluxer_sso_client.verifier import AccessToken, TokenVerifier

_CREDENTIALS = re.compile(r"^Bearer +([A-Za-z0-9\-._~+/]+=*)$", re.IGNORECASE)  # RFC 6750 §2.1 b64token


@dataclass(frozen=True)
class Denial:
    """An RFC 6750 error answer: status, headers and a JSON body."""

    status: int
    error: str | None
    description: str
    headers: tuple[tuple[str, str], ...]

    def body(self) -> bytes:
        return json.dumps({"error": self.error or "invalid_request", "error_description": self.description}).encode()


class BearerDenied(Exception):
    """Raised by authenticate(); ``denial`` says what to answer."""

    def __init__(self, denial: Denial) -> None:
        super().__init__(denial.description)
        self.denial = denial


def _quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def challenge(status: int, error: str | None, description: str, realm: str, scope: str | None = None) -> Denial:
    params = [f'realm="{_quoted(realm)}"']
    if error:
        params.append(f'error="{error}"')
        params.append(f'error_description="{_quoted(description)}"')
    if scope:
        params.append(f'scope="{_quoted(scope)}"')
    headers = [("WWW-Authenticate", "Bearer " + ", ".join(params)), ("Cache-Control", "no-store")]
    return Denial(status, error, description, tuple(headers))


def authenticate(
    authorization: str | None, verifier: TokenVerifier, scope: str | Iterable[str] | None = None, realm: str = "api"
) -> AccessToken:
    """The verified token from an ``Authorization`` header value, or BearerDenied."""
    if not authorization:
        raise BearerDenied(challenge(401, None, "a Bearer access token is required", realm))
    match = _CREDENTIALS.match(authorization)
    if match is None:
        raise BearerDenied(challenge(400, "invalid_request", "malformed Authorization header", realm))
    try:
        return verifier.verify(match.group(1), scope)
    except InsufficientScope as exc:
        raise BearerDenied(challenge(403, exc.error, exc.description, realm, exc.scope)) from None
    except TokenError as exc:
        raise BearerDenied(challenge(401, exc.error, exc.description, realm)) from None
    except VerificationUnavailable as exc:
        headers = (("Retry-After", str(exc.retry_after)), ("Cache-Control", "no-store"))
        raise BearerDenied(Denial(503, exc.error, exc.description, headers)) from None
