"""What one operation of each benchmark scenario sends, and what it must get back.

An operation is a generator for ``bench.load``: it yields request bytes,
receives each reply, raises ``Unexpected`` on any answer a healthy service
would not give (so "errors" in the table means wrong answers, not only
5xx), and returns what a later step may need (a code, a token response).
"""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from bench.load import Op, Reply, Unexpected, connect, drive, request
from sso.cookies import COOKIE_NAME
from sso.pkce import s256

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # RFC 7636 Appendix B
CLIENT_ID = "fluxer"
APP_ORIGIN = "http://app.bench"
REDIRECT_URI = f"{APP_ORIGIN}/oauth/callback"
CLAIMS = {"name": "Ada Lovelace", "email": "ada@example.com", "email_verified": True}
FORM = "application/x-www-form-urlencoded"
AUTHORIZE_QUERY = urlencode(
    {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "state": "bench-state",
        "code_challenge": s256(VERIFIER),
        "code_challenge_method": "S256",
        "scope": "openid profile email",
        "nonce": "bench-nonce",
    }
)


@dataclass
class Target:
    """The server under test: how to address it, and setup steps run outside any measurement."""

    address: tuple[str, int]
    secret: str

    @property
    def host(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        return request("GET", path, self.host, headers)

    def post(self, path: str, body: bytes, content_type: str, *, service: bool = False) -> bytes:
        headers = {"Content-Type": content_type}
        if service:
            headers["Authorization"] = f"Service {self.secret}"
        return request("POST", path, self.host, headers, body)

    def call(self, op: Op) -> Any:
        """Run one operation now on a fresh connection (an idle one may have hit the keep-alive timeout)."""
        with connect(self.address) as sock:
            return drive(sock, op)


@dataclass(frozen=True)
class Fixture:
    """One load-generator connection's own session and tokens."""

    user_id: str
    token: str  # the SSO cookie
    sid: str
    access_token: str
    code_cookies: tuple[str, ...]  # sessions for authorize + exchange, taken in turn: a session holds 32 live
    # families and 256 ended ones whose tokens still live (docs/storage.md), so a hot loop needs several


def expect(reply: Reply, status: int, marker: bytes = b"") -> Reply:
    if reply.status != status or marker not in reply.body:
        raise Unexpected(f"HTTP {reply.status}: {reply.body[:120]!r}")
    return reply


# -- operations --------------------------------------------------------------------


def fetch(t: Target, path: str) -> Op:
    expect((yield t.get(path)), 200)


def create_session(t: Target, user_id: str) -> Op:
    body = {"user_id": user_id, "client_ip": "203.0.113.7", "user_agent": "bench/1.0", "platform": "web",
            "claims": CLAIMS}  # fmt: skip
    reply = expect((yield t.post("/session/create", json.dumps(body).encode(), "application/json", service=True)), 201)
    return json.loads(reply.body)


def validate(t: Target, sid: str) -> Op:
    body = json.dumps({"token_hash": sid}).encode()
    expect((yield t.post("/session/validate", body, "application/json", service=True)), 200, b'"valid":true')


def authorize(t: Target, cookie: str) -> Op:
    reply = yield t.get(f"/authorize?{AUTHORIZE_QUERY}", {"Cookie": f"{COOKIE_NAME}={cookie}"})
    location = reply.headers.get("location", "")
    if reply.status != 302 or "code=" not in location:
        raise Unexpected(f"HTTP {reply.status} to {location[:120]}")
    return parse_qs(urlsplit(location).query)["code"][0]


def exchange(t: Target, code: str) -> Op:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER, "client_id": CLIENT_ID}  # fmt: skip
    reply = expect((yield t.post("/token", urlencode(form).encode(), FORM)), 200, b'"id_token"')
    return json.loads(reply.body)


def authorize_and_exchange(t: Target, cookie: str) -> Op:
    code = yield from authorize(t, cookie)
    return (yield from exchange(t, code))


def refresh(t: Target, chain: list[str]) -> Op:
    """One rotation: the successor replaces the presented token (grace 0: no second use)."""
    form = {"grant_type": "refresh_token", "refresh_token": chain[0], "client_id": CLIENT_ID}
    reply = expect((yield t.post("/token", urlencode(form).encode(), FORM)), 200, b'"refresh_token"')
    chain[0] = json.loads(reply.body)["refresh_token"]


def introspect(t: Target, access_token: str) -> Op:
    body = urlencode({"token": access_token, "token_type_hint": "access_token"}).encode()
    expect((yield t.post("/introspect", body, FORM, service=True)), 200, b'"active":true')


def userinfo(t: Target, access_token: str) -> Op:
    expect((yield t.get("/userinfo", {"Authorization": f"Bearer {access_token}"})), 200, b'"email"')


# -- setup -----------------------------------------------------------------------


# per connection: room for 24 x 288 code exchanges within an access-token lifetime. Connection 0 also
# serves the warm-up, the MONITOR pass, the in-process pass and every c=1 run: ~3 000 exchanges on a
# quiet machine, past 8 x 288, after which the store answers "busy" and the rate limiter 429s.
CODE_SESSIONS = 24


def make_fixtures(t: Target, count: int) -> list[Fixture]:
    fixtures = []
    for i in range(count):
        user_id = f"bench-{i}"
        session = t.call(create_session(t, user_id))
        tokens = t.call(authorize_and_exchange(t, session["token"]))
        others = tuple(t.call(create_session(t, user_id))["token"] for _ in range(CODE_SESSIONS))
        fixtures.append(Fixture(user_id, session["token"], session["session_id_hash"], tokens["access_token"], others))
    return fixtures


# -- the scenarios ------------------------------------------------------------------

OpFactory = Callable[[int], Op]


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str  # what one operation is
    prepare: Callable[[Target, list[Fixture]], OpFactory]  # called before each run, outside the measurement
    marks_activity: bool = False


def _discovery(t: Target, _: list[Fixture]) -> OpFactory:
    return lambda i: fetch(t, "/.well-known/openid-configuration")


def _jwks(t: Target, _: list[Fixture]) -> OpFactory:
    return lambda i: fetch(t, "/.well-known/jwks.json")


def _health(t: Target, _: list[Fixture]) -> OpFactory:
    return lambda i: fetch(t, "/_health")


def _create(t: Target, _: list[Fixture]) -> OpFactory:
    run, counter = secrets.token_hex(3), itertools.count()
    return lambda i: create_session(t, f"u{run}-{i}-{next(counter)}")


def _validate(t: Target, fx: list[Fixture]) -> OpFactory:
    return lambda i: validate(t, fx[i].sid)


def _authorize(t: Target, fx: list[Fixture]) -> OpFactory:
    return lambda i: authorize(t, fx[i].token)


def _flow(t: Target, fx: list[Fixture]) -> OpFactory:
    turn = itertools.count()
    return lambda i: authorize_and_exchange(t, fx[i].code_cookies[next(turn) % CODE_SESSIONS])


def _refresh(t: Target, fx: list[Fixture]) -> OpFactory:
    """A fresh rotation chain per connection for every run: each walks its own."""
    chains = [[t.call(authorize_and_exchange(t, f.token))["refresh_token"]] for f in fx]
    return lambda i: refresh(t, chains[i])


def _introspect(t: Target, fx: list[Fixture]) -> OpFactory:
    return lambda i: introspect(t, fx[i].access_token)


def _userinfo(t: Target, fx: list[Fixture]) -> OpFactory:
    return lambda i: userinfo(t, fx[i].access_token)


SCENARIOS = (
    Scenario("discovery", "GET /.well-known/openid-configuration", _discovery),
    Scenario("jwks", "GET /.well-known/jwks.json", _jwks),
    Scenario("health (floor)", "GET /_health: one Redis PING, the floor of a request with one round trip", _health),
    Scenario("session/create", "POST /session/create", _create),
    Scenario("session/validate", "POST /session/validate", _validate, marks_activity=True),
    Scenario("authorize (cookie)", "GET /authorize with a valid SSO cookie -> 302 with a code", _authorize, True),
    Scenario("authorize + code exchange", "GET /authorize, then POST /token (code grant): 2 requests", _flow, True),
    Scenario("refresh grant", "POST /token (refresh grant), each connection on its own chain", _refresh, True),
    Scenario("introspect (access token)", "POST /introspect of an access token", _introspect),
    Scenario("userinfo", "GET /userinfo with a Bearer access token", _userinfo),
)
