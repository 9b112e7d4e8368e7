"""Fluxer SSO: OAuth 2.0 / OpenID Connect server and global session store."""
