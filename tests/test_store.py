"""The Lua scripts' invariants, called directly on a real Redis."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from sso.digests import token_hash
from tests.conftest import SERVICE_SECRET
from tests.redis_server import RedisServer, has_redis_server
from tests.server import GunicornServer, LiveFlow, server_env


def redeem(store, code_hash: str, *, fid: str = "f1", jti: str = "j1", now: int = 1000, sid: str = "s" * 43):
    return store.redeem_code(code_hash, user_id="42", sid=sid, fid=fid, client_id="fluxer", scope="openid",
                             refresh_hash="r" * 43, now=now, expires_at=now + 5000, jti=jti,
                             access_expires_at=now + 900, keep=900)  # fmt: skip


def test_code_redemption_retry_gets_the_same_answer(services, api, clock):
    """A Redis client retrying the very same redemption (same marker) is not a replay."""
    store = services.store
    session = api.create("42")
    binding = {"sid": session["session_id_hash"]}
    issued = store.issue_code("c" * 43, sid=session["session_id_hash"], binding=binding, clock=clock.now,
                              fresh_login=False, max_age=None, auth_after=None, ttl=60)  # fmt: skip
    assert issued.outcome == "ok" and issued.user_id == "42"
    now = int(clock.now)
    first = redeem(store, "c" * 43, sid=session["session_id_hash"], now=now)
    again = redeem(store, "c" * 43, sid=session["session_id_hash"], now=now)
    assert first[0] == again[0] == "ok" and first[1] == again[1]
    replay = redeem(store, "c" * 43, sid=session["session_id_hash"], fid="f2", jti="j2", now=now)
    assert replay == ("used", None, {"fid": "f1", "jti": "j1"})
    assert store.redis.exists(store.family_key("42", "f1"))  # what the replay must revoke exists


def test_rotation_retry_with_the_same_jti_is_not_reuse(services, oauth, clock):
    """The same rotation request run twice (same jti) answers ok twice and keeps the family alive."""
    oauth.login()
    body = oauth.tokens()
    grants, store = services.grants, services.store
    successor = grants.successor(body["refresh_token"])
    kwargs = dict(
        presented=token_hash(body["refresh_token"]),
        successor=token_hash(successor),
        now=int(clock.now),
        grace=0,
        client_id="fluxer",
        scope="",
        jti="same-jti",
        access_expires_at=int(clock.now) + 900,
    )
    assert store.rotate_refresh(**kwargs).outcome == "ok"
    assert store.rotate_refresh(**kwargs).outcome == "ok"
    assert store.rotate_refresh(**{**kwargs, "jti": "other-jti"}).outcome == "reuse"  # a different request is


def test_family_jti_index_is_pruned_and_revocation_denies_only_live_tokens(services, oauth, clock, redis, prefix):
    """Access token ids of a family are kept only until they expire; revoking denies the live ones."""
    oauth.login()
    token = oauth.tokens()["refresh_token"]
    for _ in range(10):
        clock.advance(services.settings.access_token_ttl + 1)  # every earlier access token has expired
        token = oauth.refresh(token).get_json()["refresh_token"]
    (jtis_key,) = redis.scan_iter(match=f"{prefix}{{42}}:jtis:*")
    assert redis.zcard(jtis_key) == 1
    oauth.client.post("/revoke", data={"token": token, "client_id": "fluxer"})
    denied = list(redis.scan_iter(match=f"{prefix}jti:*"))
    assert len(denied) == 1 and 0 < redis.ttl(denied[0]) <= services.settings.access_token_ttl


@pytest.mark.skipif(not has_redis_server(), reason="needs redis-server to stall a private Redis")
def test_long_stall_is_a_503_and_a_grace_retry_then_succeeds(settings, redis):
    """A refresh while Redis stalls past both attempts answers 503 within ~2 s. The timed-out
    rotation may still have run; with a grace window the client's own retry gets its successor."""
    import dataclasses

    private = RedisServer()
    private.start()
    srv = GunicornServer(server_env(dataclasses.replace(settings, redis_url=private.url), SSO_REFRESH_REUSE_GRACE="30"),
                         workers=1)  # fmt: skip
    srv.start()
    try:
        live = LiveFlow(srv.url, SERVICE_SECRET)
        tokens = live.exchange(live.code(live.login())).json()
        busy = private_client(private)
        stall = threading.Thread(
            target=lambda: busy.eval(
                "local s = redis.call('TIME')[1] while redis.call('TIME')[1] - s < 4 do end return 1", 0
            )
        )
        stall.start()
        private.wait_until_stalled()
        started = time.monotonic()
        during = live.refresh(tokens["refresh_token"])
        elapsed = time.monotonic() - started
        stall.join()
        busy.close()
        assert during.status_code == 503 and during.json()["error"] == "temporarily_unavailable"
        assert elapsed < 3.0
        retry = live.refresh(tokens["refresh_token"])
        assert retry.status_code == 200, retry.text
        assert live.refresh(retry.json()["refresh_token"]).status_code == 200
        assert requests.get(f"{srv.url}/_health", timeout=5).status_code == 200
    finally:
        srv.stop()
        private.cleanup()


def private_client(server: RedisServer):
    import redis as redis_lib

    return redis_lib.Redis(port=server.port, socket_timeout=10)
