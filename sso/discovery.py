"""The discovery document (RFC 8414 §2, OpenID Connect Discovery 1.0 §3), built once."""

from __future__ import annotations

import json
from typing import Any

from config.settings import Settings
from sso import scopes
from sso.grants import GRANT_TYPES


def discovery_document(settings: Settings) -> dict[str, Any]:
    issuer = settings.issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "end_session_endpoint": f"{issuer}/logout",
        "introspection_endpoint": f"{issuer}/introspect",
        "revocation_endpoint": f"{issuer}/revoke",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": list(scopes.SUPPORTED),
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "sid",
            "at_hash",
            *scopes.PROFILE_CLAIMS,
            *scopes.EMAIL_CLAIMS,
        ],  # fmt: skip
        "subject_types_supported": ["public"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "claims_parameter_supported": False,
        **(
            {"backchannel_logout_supported": True, "backchannel_logout_session_supported": True}
            if settings.backchannel_logout_uris
            else {}
        ),
    }


def discovery_json(settings: Settings) -> bytes:
    return json.dumps(discovery_document(settings), separators=(",", ":")).encode()
