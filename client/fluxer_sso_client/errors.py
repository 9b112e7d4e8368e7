"""The library's exceptions: one tree, each carrying what an HTTP answer needs.

    SSOError
    ├── TokenError                 a token this instance must refuse (RFC 6750 §3.1)
    │   └── InsufficientScope      valid, but without the scope the route needs
    ├── VerificationUnavailable    verification cannot decide now (outage policy): answer 503
    └── ServiceError               the service answered an error (status, RFC error code)
        ├── ServiceUnavailable     503 or unreachable, after the retries
        └── RateLimited            429 with a Retry-After longer than the client waits

No exception's message or attributes ever hold the service secret or a token.
"""

from __future__ import annotations


class SSOError(Exception):
    """Base of every exception this library raises."""


class TokenError(SSOError):
    """The presented access token is refused: ``invalid_token`` with a 401."""

    error = "invalid_token"
    status = 401

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InsufficientScope(TokenError):
    """The token is valid but lacks a scope: ``insufficient_scope`` with a 403 (RFC 6750 §3.1)."""

    error = "insufficient_scope"
    status = 403

    def __init__(self, scope: str) -> None:
        super().__init__(f"the token lacks the scope {scope!r}")
        self.scope = scope


class VerificationUnavailable(SSOError):
    """Verification cannot decide (no key set yet, or the event feed is down in strict mode)."""

    error = "temporarily_unavailable"
    status = 503

    def __init__(self, description: str, retry_after: int = 5) -> None:
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after


class ServiceError(SSOError):
    """The service answered with an error; ``error`` is its RFC error code."""

    def __init__(self, status: int, error: str, description: str = "") -> None:
        super().__init__(f"{status} {error}: {description}" if description else f"{status} {error}")
        self.status = status
        self.error = error
        self.description = description


class ServiceUnavailable(ServiceError):
    """The service was unreachable or answered 503 on every attempt."""

    def __init__(self, description: str) -> None:
        super().__init__(503, "temporarily_unavailable", description)


class RateLimited(ServiceError):
    """429 with a ``Retry-After`` longer than the client is configured to wait."""

    def __init__(self, retry_after: float, description: str = "") -> None:
        super().__init__(429, "rate_limited", description or f"retry after {retry_after:g}s")
        self.retry_after = retry_after
