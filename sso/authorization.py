"""The authorization endpoint (RFC 6749 §4.1.1-4.1.2, RFC 7636 §4.3, OIDC Core §3.1.2, RFC 9207).

Order matters: the client and the redirect URI are checked first, and an
error in either is shown to the user, never redirected (RFC 6749 §4.1.2.1,
RFC 9700 §4.1). Every later error goes back to the client's redirect URI with
``error``, ``state`` and ``iss``, as does success.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from marshmallow import ValidationError

from sso import errors, pkce, scopes
from sso.context import OAuthContext
from sso.digests import token_hash
from sso.keys import TokenRejected
from sso.schemas import AuthorizeSchema, first_error

CODE_TTL = 60
PROMPTS = frozenset({"none", "login", "consent", "select_account"})

Params = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class AuthorizeOutcome:
    """Where to send the browser, and whether the request failed (counted by the rate limit):
    an error redirected to the client, or an SSO cookie that is not a live session."""

    location: str
    failed: bool = False
    user_id: str | None = None  # the cookie's user, when a code was issued (for the access log)


def append_query(uri: str, params: dict[str, str]) -> str:
    """Add parameters to a URI that may already carry a query (RFC 6749 §3.1.2), before its
    fragment if it has one (a post-logout URI on an app origin may)."""
    base, hash_mark, fragment = uri.partition("#")
    return base + ("&" if "?" in base else "?") + urlencode(params) + hash_mark + fragment


def _single(params: Params, name: str, error: type[errors.SSOError]) -> str | None:
    values = params.get(name) or []
    if len(values) > 1:
        raise error(f"{name}: parameter repeated")
    return values[0] if values else None


class AuthorizationService:
    def __init__(self, ctx: OAuthContext, hint_subject: Callable[[str], str] | None = None) -> None:
        """``hint_subject``: the ``sub`` of an ``id_token_hint`` this issuer signed (expired ones
        too), raising ``TokenRejected`` for anything else (TokenService.verify_id_token_hint)."""
        self.ctx = ctx
        self.hint_subject = hint_subject
        self._schema = AuthorizeSchema()
        self._known = frozenset(self._schema.fields)

    def authorize(self, params: Params, cookie_token: str | None) -> AuthorizeOutcome:
        """Where to send the browser; raises only errors that must not redirect."""
        client_id = _single(params, "client_id", errors.UnknownClient)
        if client_id is None or not self.ctx.clients.known(client_id):
            raise errors.UnknownClient()
        redirect_uri = _single(params, "redirect_uri", errors.InvalidRedirectURI)
        if redirect_uri is None or not self.ctx.clients.redirect_allowed(redirect_uri):
            raise errors.InvalidRedirectURI()
        states = params.get("state") or []
        try:
            return self._authorize(params, client_id, redirect_uri, cookie_token)
        except errors.SSOError as exc:
            if not exc.redirectable:
                raise
            reply = {"error": exc.error, "error_description": exc.description}
            if len(states) == 1 and states[0]:
                reply["state"] = states[0]
            reply["iss"] = self.ctx.settings.issuer
            return AuthorizeOutcome(append_query(redirect_uri, reply), failed=True)

    def _authorize(
        self, params: Params, client_id: str, redirect_uri: str, cookie_token: str | None
    ) -> AuthorizeOutcome:
        # Unrecognised parameters are ignored (RFC 6749 §3.1), repeated or not, and not carried to the
        # login page; one sent without a value is treated as omitted (the same section).
        single = {name: _single(params, name, errors.InvalidRequest) for name in params if name in self._known}
        single = {name: value for name, value in single.items() if value}
        try:
            data: dict[str, Any] = self._schema.load(single)
        except ValidationError as exc:
            raise errors.InvalidRequest(first_error(exc.messages)) from None

        if not data.get("response_type"):
            raise errors.InvalidRequest("response_type: missing")
        if data["response_type"] != "code":
            raise errors.UnsupportedResponseType()
        if data.get("request") is not None:
            raise errors.RequestNotSupported()
        if data.get("request_uri") is not None:
            raise errors.RequestUriNotSupported()
        if data.get("response_mode") not in (None, "query"):
            raise errors.InvalidRequest("response_mode: only query is supported")
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        if not challenge:
            raise errors.InvalidRequest("code_challenge: required (PKCE with S256)")
        if method != pkce.METHOD:
            raise errors.InvalidRequest("code_challenge_method: must be S256")
        if not pkce.valid_challenge(challenge):
            raise errors.InvalidRequest("code_challenge: must be a base64url SHA-256 hash (43 characters)")
        scope = scopes.parse(data.get("scope"))
        prompts = set((data.get("prompt") or "").split())
        if not prompts <= PROMPTS or ("none" in prompts and len(prompts) > 1):
            raise errors.InvalidRequest("prompt: unsupported value or combination")

        now = int(self.ctx.clock())
        floor, max_age = data.get("auth_after"), data.get("max_age")
        if floor is not None and floor > now + 60:
            raise errors.InvalidRequest("auth_after: in the future")
        fresh_login_needed = "login" in prompts or max_age is not None or floor is not None
        hinted_user = self._hinted_user(data.get("id_token_hint"))
        outcome, code, user_id = "none", None, None
        if cookie_token:
            binding = {"client_id": client_id, "redirect_uri": redirect_uri, "code_challenge": challenge,
                       "sid": token_hash(cookie_token), "scope": scope, "nonce": data.get("nonce")}  # fmt: skip
            outcome, code, user_id = self._issue_code(binding, "login" in prompts, max_age, floor, hinted_user)
        if code is None:  # no live session ("none"), or one that needs a fresh login ("stale")
            if "none" in prompts:
                raise errors.LoginRequired()
            login = self._login_redirect(single, now if fresh_login_needed else None)
            return AuthorizeOutcome(login, failed=outcome == "none" and cookie_token is not None)

        reply = {"code": code}
        state = single.get("state")
        if state is not None:
            reply["state"] = state
        reply["iss"] = self.ctx.settings.issuer
        return AuthorizeOutcome(append_query(redirect_uri, reply), user_id=user_id)

    def _login_redirect(self, params: Mapping[str, str | None], floor: int | None) -> str:
        """Send the browser to the login page, which returns it here afterwards.

        When the request asked for a fresh login (``prompt=login``, ``max_age``),
        ``return_to`` carries ``auth_after=<now>`` instead: coming back, only a
        session created after this moment is accepted. Keeping ``prompt=login``
        or a short ``max_age`` would send the browser round in circles.
        """
        query = {k: v for k, v in params.items() if v is not None}
        if floor is not None:
            query = {k: v for k, v in query.items() if k not in ("prompt", "max_age", "auth_after")}
            query["auth_after"] = str(floor)
        return_to = f"{self.ctx.settings.issuer}/authorize?{urlencode(query)}"
        return append_query(self.ctx.settings.login_url, {"return_to": return_to})

    def _hinted_user(self, hint: str | None) -> str | None:
        """OIDC Core §3.1.2.1: with an ``id_token_hint``, a code goes only to the user it names; a
        session of anyone else is answered as one that needs a login (``login_required`` with
        ``prompt=none``), so a silent renewal never switches accounts under the app."""
        if not hint or self.hint_subject is None:
            return None
        try:
            return self.hint_subject(hint)
        except TokenRejected:
            raise errors.InvalidRequest("id_token_hint: not a valid id token of this issuer") from None

    def _issue_code(
        self,
        binding: dict[str, Any],
        login_prompted: bool,
        max_age: int | None,
        floor: int | None,
        hinted_user: str | None = None,
    ) -> tuple[str, str | None, str | None]:
        """("ok", a new code bound to the cookie's session ``binding["sid"]``, its user), or
        (outcome, None, None) when that session is not alive ("none") or a fresh login is needed
        ("stale": also a session of another user than ``hinted_user``).

        The session check and the code's storage are one script: /authorize costs
        one Redis round trip.
        """
        sid = binding["sid"]
        issue = self.ctx.store.issue_code(
            sid=sid,
            binding=binding,
            clock=self.ctx.clock(),
            fresh_login=login_prompted,
            max_age=max_age,
            auth_after=floor,
            ttl=CODE_TTL,
            user_id=hinted_user,
        )
        if issue.outcome != "ok":
            return issue.outcome, None, None
        self.ctx.worker.mark_active(issue.user_id, sid, issue.last_active_at)
        return "ok", issue.code, issue.user_id
