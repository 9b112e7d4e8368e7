"""Random tokens and their hashes: the only forms in which secrets are stored.

``token_hash`` is base64url(SHA-256(token)) without padding, the same hash the
Fluxer API computes for a session token (docs/contract.md, Sessions).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def new_token(nbytes: int = 32) -> str:
    """A fresh 256-bit (by default) random token, base64url without padding."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    return b64url(hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest())


def equals(a: str, b: str) -> bool:
    """Constant-time string comparison for secrets and their hashes."""
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass"))
