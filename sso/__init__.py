"""Fluxer SSO: OAuth 2.0 / OpenID Connect server and global session store."""

__version__ = "1.0.0"  # the OpenAPI document's version and sso_build_info's
