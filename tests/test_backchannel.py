"""OIDC Back-Channel Logout 1.0: a Logout Token to each client of a session that ended.

A real HTTP receiver on loopback stands in for a client; its tokens are
verified with an independent library (PyJWT) against the published key.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
import pytest
import requests

from config.settings import ConfigError, load_settings
from sso.backchannel import BACKOFF, EVENT
from sso.digests import token_hash
from tests.conftest import SERVICE_SECRET
from tests.server import GunicornServer, LiveFlow, server_env
from tests.waiting import wait_for


class Receiver:
    """A client's back-channel logout endpoint: records each POST, answers ``status``."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                outer.received.append({"content_type": self.headers["Content-Type"],
                                       **{k: v[0] for k, v in form.items()}})  # fmt: skip
                self.send_response(outer.status)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_port}/backchannel-logout"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def settings_overrides(receiver: Receiver) -> dict:
    return {"backchannel_logout_uris": (("fluxer", receiver.uri),)}


def deliver(services) -> None:
    """One background round, as the worker's loop runs it, waited for (the sender is a greenlet of its own)."""
    services.worker.run_once()
    services.backchannel.join(10)


def verified(token: str, key_pair: tuple[str, str], services) -> dict:
    """PyJWT, not our code: RS256 with the published key, our issuer, the client as audience."""
    assert jwt.get_unverified_header(token)["typ"] == "logout+jwt"
    return jwt.decode(token, key_pair[1], algorithms=["RS256"], audience="fluxer", issuer=services.settings.issuer,
                      options={"require": ["iss", "aud", "iat", "exp", "jti", "sub", "sid", "events"]})  # fmt: skip


def test_ending_a_session_sends_one_logout_token(oauth, api, services, receiver, key_pair):
    """After an invalidation the worker POSTs a Logout Token (§2.4, §2.5) that PyJWT verifies;
    the request itself did no I/O."""
    session = oauth.login()
    oauth.tokens()
    ended = api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [session["session_id_hash"]]})
    assert ended.status_code == 200 and receiver.received == []  # not on the request path
    deliver(services)
    (post,) = receiver.received
    assert post["content_type"] == "application/x-www-form-urlencoded" and set(post) == {"content_type", "logout_token"}
    claims = verified(post["logout_token"], key_pair, services)
    assert (claims["sub"], claims["sid"], claims["events"]) == ("42", session["session_id_hash"], {EVENT: {}})
    assert "nonce" not in claims and 0 < claims["exp"] - claims["iat"] <= 120


def test_only_clients_that_got_tokens_are_told(oauth, api, services, receiver, settings):
    """A session that issued no tokens to the configured client (or none at all) sends nothing."""
    plain = api.create("42")
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [plain["session_id_hash"]]})
    session = oauth.login()
    admin = {"client_id": "fluxer-admin", "redirect_uri": "http://admin.test/oauth/callback"}  # no URI for it
    assert oauth.exchange(oauth.code(**admin), **admin).status_code == 200
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [session["session_id_hash"]]})
    deliver(services)
    assert receiver.received == []


def test_every_way_of_ending_a_session_notifies(oauth, api, services, receiver, app):
    """invalidate-all, /logout, the operator CLI: each ended session with tokens gets its logout token."""
    sids = []
    for _ in range(3):
        sids.append(oauth.login()["session_id_hash"])
        oauth.tokens()
    api.post("/session/invalidate-all", {"user_id": "42", "except_session_id_hashes": sids[2:]})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["sso", "end-session", "42", sids[2]]).exit_code == 0
    deliver(services)
    told = sorted(jwt.decode(p["logout_token"], options={"verify_signature": False})["sid"] for p in receiver.received)
    assert told == sorted(sids)


def test_eviction_notifies(settings, receiver, clock, redis):
    """The per-user cap ends the least recently active session: its client is told too."""
    from app import create_app
    from tests.conftest import Api, OAuth

    app = create_app(dataclasses.replace(settings, max_sessions_per_user=1,
                                         backchannel_logout_uris=(("fluxer", receiver.uri),)), clock=clock)  # fmt: skip
    try:
        client = app.test_client()
        oauth = OAuth(client, Api(client, {"Authorization": f"Service {SERVICE_SECRET}"}))
        first = oauth.login()
        oauth.tokens()
        oauth.login()  # evicts the first
        deliver(app.extensions["sso"])
        (post,) = receiver.received
        assert jwt.decode(post["logout_token"], options={"verify_signature": False})["sid"] == first["session_id_hash"]
    finally:
        app.extensions["sso"].redis.close()


def test_every_session_a_lowered_cap_evicts_notifies(settings, receiver, clock, redis):
    """Restarted with a smaller cap, one sign-in ends the whole surplus: each evicted session's client is told."""
    from app import create_app
    from tests.conftest import Api, OAuth

    def app_with_cap(cap: int):
        uris = (("fluxer", receiver.uri),)
        return create_app(dataclasses.replace(settings, max_sessions_per_user=cap, backchannel_logout_uris=uris),
                          clock=clock)  # fmt: skip

    def oauth_of(app):
        client = app.test_client()
        return OAuth(client, Api(client, {"Authorization": f"Service {SERVICE_SECRET}"}))

    before, after = app_with_cap(4), app_with_cap(1)
    try:
        first, oauth = [], oauth_of(before)
        for _ in range(3):
            first.append(oauth.login()["session_id_hash"])
            oauth.tokens()
            clock.advance(1)
        oauth_of(after).login()  # ends all three
        deliver(after.extensions["sso"])
        told = [jwt.decode(p["logout_token"], options={"verify_signature": False})["sid"] for p in receiver.received]
        assert sorted(told) == sorted(first)
    finally:
        before.extensions["sso"].redis.close()
        after.extensions["sso"].redis.close()


def test_failures_are_retried_with_backoff_then_given_up(oauth, api, services, receiver, clock):
    """5xx: retried after 1, 2, 4 … s (a fresh token each time); delivered once the client answers 200."""
    session = oauth.login()
    oauth.tokens()
    receiver.status = 503
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [session["session_id_hash"]]})
    deliver(services)
    assert len(receiver.received) == 1 and services.backchannel.pending == 1
    deliver(services)
    assert len(receiver.received) == 1  # not due yet
    clock.advance(BACKOFF[0])
    deliver(services)
    assert len(receiver.received) == 2
    receiver.status = 200
    clock.advance(BACKOFF[1])
    deliver(services)
    assert len(receiver.received) == 3 and services.backchannel.pending == 0
    assert receiver.received[1]["logout_token"] != receiver.received[2]["logout_token"]


def test_a_4xx_is_not_retried_and_a_dead_client_is_given_up(oauth, api, services, receiver, clock):
    """400 is the client refusing (§2.8): no retry. No answer at all: retried, then dropped after the backoff."""
    session = oauth.login()
    oauth.tokens()
    receiver.status = 400
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [session["session_id_hash"]]})
    deliver(services)
    assert len(receiver.received) == 1 and services.backchannel.pending == 0
    receiver.close()  # nobody listens any more
    other = oauth.login()
    oauth.tokens()
    api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [other["session_id_hash"]]})
    for wait in (0, *BACKOFF):
        clock.advance(wait)
        deliver(services)
    assert services.backchannel.pending == 0


def test_discovery_says_so_only_when_configured(client, services, settings):
    """backchannel_logout_supported and _session_supported are published with a URI configured."""
    body = client.get("/.well-known/openid-configuration").get_json()
    assert body["backchannel_logout_supported"] is True and body["backchannel_logout_session_supported"] is True
    from sso.discovery import discovery_document

    assert "backchannel_logout_supported" not in discovery_document(
        dataclasses.replace(settings, backchannel_logout_uris=())
    )


@pytest.mark.parametrize(
    "value, problem",
    [
        ("fluxer", "client_id=URI"),
        ("nobody=https://a.test/bcl", "client_id=URI"),
        ("fluxer=http://app.test/bcl", "must be https"),
        ("fluxer=ftp://app.test/bcl", "not an absolute http(s) URL"),
        ("fluxer=https://a.test/1,fluxer=https://a.test/2", "listed twice"),
    ],
)
def test_bad_uris_stop_the_start(key_pair, value, problem):
    env = {"SSO_JWT_PRIVATE_KEY": key_pair[0], "SSO_JWT_PUBLIC_KEY": key_pair[1], "SSO_SERVICE_SECRET": SERVICE_SECRET,
           "SSO_BACKCHANNEL_LOGOUT_URIS": value}  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert caught.value.variable == "SSO_BACKCHANNEL_LOGOUT_URIS" and problem in caught.value.problem
    ok = load_settings({**env, "SSO_BACKCHANNEL_LOGOUT_URIS": "fluxer=https://app.test/bcl,fluxer-x=http://127.0.0.1:9/b",
                        "SSO_CLIENTS": "fluxer,fluxer-x"})  # fmt: skip
    assert ok.backchannel_logout_uris == (("fluxer", "https://app.test/bcl"), ("fluxer-x", "http://127.0.0.1:9/b"))


def test_through_gunicorn_the_worker_greenlet_delivers(settings, receiver, key_pair, redis):
    """The real deployment: gevent workers deliver by themselves, and the invalidation answered at once."""
    env = server_env(settings, SSO_BACKCHANNEL_LOGOUT_URIS=f"fluxer={receiver.uri}")
    srv = GunicornServer(env, workers=2)
    srv.start()
    try:
        live = LiveFlow(srv.url, SERVICE_SECRET)
        cookie = live.login()
        assert live.exchange(live.code(cookie)).status_code == 200
        sid = token_hash(cookie)
        answer = requests.post(f"{srv.url}/session/invalidate", json={"user_id": "42", "session_id_hashes": [sid]},
                               headers=live.headers, timeout=5)  # fmt: skip
        assert answer.json() == {"invalidated": [sid]}
        wait_for(lambda: len(receiver.received) == 1, timeout=10, what="the logout token to arrive")
        claims = jwt.decode(receiver.received[0]["logout_token"], key_pair[1], algorithms=["RS256"], audience="fluxer",
                            issuer=settings.issuer)  # fmt: skip
        assert claims["sid"] == sid
        metrics = requests.get(f"{srv.url}/metrics", headers=live.headers, timeout=5).text
        assert 'sso_backchannel_logout_total{outcome="delivered"} 1.0' in metrics
    finally:
        srv.stop()


def test_a_client_that_speaks_no_http_holds_up_nobody(oauth, api, services, settings, receiver, clock):
    """A garbled answer (no status line) counts against that delivery only: the next client is still told."""
    import socket

    bad = socket.socket()
    bad.bind(("127.0.0.1", 0))
    bad.listen(8)

    def garble() -> None:
        while True:
            try:
                conn, _ = bad.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"garbage\r\n\r\n")
            conn.close()

    threading.Thread(target=garble, daemon=True).start()
    try:
        uris = {"fluxer-admin": f"http://127.0.0.1:{bad.getsockname()[1]}/bcl", "fluxer": receiver.uri}
        services.backchannel.uris = uris
        session = oauth.login()
        admin = {"client_id": "fluxer-admin", "redirect_uri": "http://admin.test/oauth/callback"}
        assert oauth.exchange(oauth.code(**admin), **admin).status_code == 200  # the garbling client first
        oauth.tokens()
        api.post("/session/invalidate", {"user_id": "42", "session_id_hashes": [session["session_id_hash"]]})
        deliver(services)
        assert len(receiver.received) == 1  # told, despite the one before it
        assert services.backchannel.pending == 1  # the garbled one waits for its retry
    finally:
        bad.close()
