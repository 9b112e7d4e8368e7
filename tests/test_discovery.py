"""Discovery (RFC 8414, OIDC Discovery) and the JWKS (RFC 7517, RFC 7638)."""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.serialization import load_pem_public_key


def test_discovery_document(client, settings):
    """Every field docs/contract.md lists, the issuer exactly, cacheable and readable cross-origin."""
    response = client.get("/.well-known/openid-configuration", headers={"Origin": "http://elsewhere.test"})
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    doc = response.get_json()
    issuer = settings.issuer
    assert doc["issuer"] == issuer == "http://sso.test"
    assert doc["authorization_endpoint"] == f"{issuer}/authorize"
    assert doc["token_endpoint"] == f"{issuer}/token"
    assert doc["userinfo_endpoint"] == f"{issuer}/userinfo"
    assert doc["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert doc["end_session_endpoint"] == f"{issuer}/logout"
    assert doc["introspection_endpoint"] == f"{issuer}/introspect"
    assert doc["revocation_endpoint"] == f"{issuer}/revoke"
    assert doc["response_types_supported"] == ["code"]
    assert doc["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert doc["token_endpoint_auth_methods_supported"] == ["none"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["scopes_supported"] == ["openid", "profile", "email"]
    assert {"sub", "name", "email", "email_verified", "sid", "auth_time", "nonce"} <= set(doc["claims_supported"])
    assert doc["subject_types_supported"] == ["public"]
    assert doc["authorization_response_iss_parameter_supported"] is True


def test_jwks_kid_is_the_rfc7638_thumbprint(client, key_pair):
    """The JWK matches the configured key, and kid is its RFC 7638 thumbprint computed independently."""
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    (jwk,) = response.get_json()["keys"]
    assert set(jwk) == {"kty", "n", "e", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["use"], jwk["alg"]) == ("RSA", "sig", "RS256")
    numbers = load_pem_public_key(key_pair[1].encode()).public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

    assert jwk["n"] == b64(numbers.n) and jwk["e"] == b64(numbers.e) == "AQAB"
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"))
    expected = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    assert jwk["kid"] == expected
    assert "d" not in jwk and "p" not in jwk  # never the private parts
