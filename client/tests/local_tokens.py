"""Tokens signed locally, with a key set the verifier fetches through a function (no HTTP)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from harness import ISSUER, rsa_pem_pair

PRIVATE, PUBLIC = rsa_pem_pair()
OTHER_PRIVATE, _ = rsa_pem_pair()


def jwk_set(*publics: str) -> dict[str, Any]:
    keys = []
    for i, pem in enumerate(publics):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(serialization.load_pem_public_key(pem.encode())))
        keys.append({**jwk, "kid": f"k{i}", "use": "sig", "alg": "RS256"})
    return {"keys": keys}


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


def mint(clock: Clock, key: str = PRIVATE, kid: str = "k0", headers: dict[str, Any] | None = None,
         alg: str = "RS256", **claims: Any) -> str:  # fmt: skip
    now = int(clock.now)
    body = {"iss": ISSUER, "aud": "fluxer-api", "sub": "42", "client_id": "fluxer", "scope": "openid profile",
            "sid": "S" * 43, "iat": now, "exp": now + 900, "jti": "j1", **claims}  # fmt: skip
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"typ": "at+jwt", "kid": kid, **(headers or {})})


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs256_with_public_key(clock: Clock) -> str:
    """The classic confusion attack: HMAC 'signed' with the published RSA key as the secret."""
    now = int(clock.now)
    claims = {"iss": ISSUER, "aud": "fluxer-api", "sub": "42", "sid": "s", "jti": "j", "iat": now, "exp": now + 60}
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'at+jwt', 'kid': 'k0'})}.{b64(claims)}"
    mac = hmac.new(PUBLIC.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"
