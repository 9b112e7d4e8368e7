"""PKCE with S256 only (RFC 7636).

``plain`` is refused at /authorize (RFC 9700 §2.1.1: S256 is the method to
use), so a challenge is always SHA-256 of the verifier. The comparison is
constant-time.
"""

from __future__ import annotations

import hashlib
import re

from sso.digests import b64url, equals

METHOD = "S256"
# §4.1: code_verifier = 43*128unreserved; unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
# §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))) is always 43 characters
CHALLENGE_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def s256(verifier: str) -> str:
    """§4.2: the S256 code challenge of a verifier."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def valid_verifier(verifier: str) -> bool:
    return bool(VERIFIER_RE.fullmatch(verifier))


def valid_challenge(challenge: str) -> bool:
    return bool(CHALLENGE_RE.fullmatch(challenge))


def verify(verifier: str, challenge: str) -> bool:
    """§4.6: does the verifier hash to the challenge the code was bound to?"""
    return valid_verifier(verifier) and equals(s256(verifier), challenge)
