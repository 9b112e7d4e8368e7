"""The client registry: public PKCE clients and exact redirect-URI matching.

RFC 9700 §4.1.3 and §2.1: redirect URIs are compared as exact strings, with
no normalisation — a trailing slash, an added query, other case, ``..``
segments or userinfo all fail.
"""

from __future__ import annotations

from collections.abc import Iterable

from sso.digests import equals


class ClientRegistry:
    def __init__(self, client_ids: Iterable[str], redirect_uris: Iterable[str]) -> None:
        self._clients = frozenset(client_ids)
        self._redirect_uris = tuple(redirect_uris)

    def known(self, client_id: str | None) -> bool:
        return client_id is not None and client_id in self._clients

    def redirect_allowed(self, redirect_uri: str | None) -> bool:
        """Exact, case-sensitive string match against the allow-list."""
        if not redirect_uri:
            return False
        matched = False
        for allowed in self._redirect_uris:
            matched |= equals(redirect_uri, allowed)
        return matched
