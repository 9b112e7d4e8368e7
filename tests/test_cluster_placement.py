"""Cluster placement cannot hide a bug: two users whose buckets live on different primaries.

A script that touched a key outside its declared slot would work on a single
server and, on a small cluster, whenever the key happened to sit on the same
node. Here every operation is exercised for two users on two different
primaries, interleaved, so any such key is on the wrong node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask

from app import create_app
from config.redis_url import parse_redis_url
from sso.store.connections import connect, node_for_key
from sso.store.layout import Keys, sid_bucket, user_bucket
from tests.conftest import Api, EventListener, OAuth
from tests.test_token_state import introspect


def port_of(client: Any, key: str) -> int:
    return int(node_for_key(client, key).connection_pool.connection_kwargs["port"])


@pytest.fixture
def cluster_app(settings, redis_cluster, clock) -> Iterator[Flask]:
    app = create_app(dataclasses.replace(settings, redis_url=redis_cluster.url), clock=clock)
    app.config["TESTING"] = True
    yield app
    app.extensions["sso"].redis.close()


def two_users_on_two_primaries(client: Any, keys: Keys) -> tuple[str, str]:
    first = "alice"
    home = port_of(client, keys.index(first))
    other = next(f"bob{n}" for n in range(1000) if port_of(client, keys.index(f"bob{n}")) != home)
    return first, other


def test_every_operation_across_two_primaries(cluster_app, redis_cluster, prefix, clock):
    """Create, validate, status, list, authorize, exchange, refresh, reuse, introspect, userinfo, revoke,
    activity, invalidate and invalidate-all for two users on two primaries: all correct."""
    keys = Keys(prefix)
    raw = connect(parse_redis_url(redis_cluster.url), timeout=5)
    services = cluster_app.extensions["sso"]
    events = EventListener(raw, f"{prefix}events")
    try:
        a, b = two_users_on_two_primaries(raw, keys)
        assert port_of(raw, keys.index(a)) != port_of(raw, keys.index(b))
        headers = {"Authorization": f"Service {services.settings.service_secrets[0]}"}
        flows = {}
        for user in (a, b):
            client = cluster_app.test_client()
            api = Api(client, headers)
            flows[user] = (api, OAuth(client, api))
        sessions = {u: oauth.login(u) for u, (_, oauth) in flows.items()}
        for u, s in sessions.items():
            assert sid_bucket(s["session_id_hash"]) == user_bucket(u)
        tokens = {u: oauth.tokens() for u, (_, oauth) in flows.items()}
        for u, (api, oauth) in flows.items():
            sid = sessions[u]["session_id_hash"]
            assert api.post("/session/validate", {"token_hash": sid}).get_json()["valid"] is True
            both = [sessions[a]["session_id_hash"], sessions[b]["session_id_hash"]]
            assert api.post("/session/status", {"session_id_hashes": both}).get_json()["sessions"] == dict.fromkeys(
                both, True
            )
            listed = api.client.get(f"/session/list/{u}", headers=headers).get_json()["sessions"]
            assert [s["session_id_hash"] for s in listed] == [sid]
            assert introspect(api, tokens[u]["access_token"])["sub"] == u
            assert introspect(api, tokens[u]["refresh_token"])["sub"] == u
            bearer = {"Authorization": f"Bearer {tokens[u]['access_token']}"}
            assert oauth.client.get("/userinfo", headers=bearer).get_json()["sub"] == u
        # rotation and reuse for both
        for u, (_, oauth) in flows.items():
            rotated = oauth.refresh(tokens[u]["refresh_token"]).get_json()
            assert "refresh_token" in rotated, rotated
            assert oauth.refresh(tokens[u]["refresh_token"]).get_json()["error"] == "invalid_grant"  # reuse
            assert oauth.refresh(rotated["refresh_token"]).get_json()["error"] == "invalid_grant"  # family ended
        # revoke an access token of a fresh family for each
        for api, oauth in flows.values():
            fresh = oauth.tokens()
            oauth.client.post("/revoke", data={"token": fresh["access_token"], "client_id": "fluxer"})
            assert introspect(api, fresh["access_token"]) == {"active": False}
            assert introspect(api, fresh["refresh_token"])["active"] is True
        # one activity batch spanning both primaries
        clock.advance(services.settings.activity_update_interval + 1)
        for u, (api, _) in flows.items():
            api.post("/session/validate", {"token_hash": sessions[u]["session_id_hash"]})
        services.worker.run_once()
        assert services.worker.writes == 2
        for u in (a, b):
            assert int(raw.hget(keys.session(sessions[u]["session_id_hash"]), "last_active_at")) == int(clock.now)
        # invalidate one of a's sessions, invalidate-all for b
        extra = flows[a][0].create(a)
        api_a, api_b = flows[a][0], flows[b][0]
        ended = api_a.post("/session/invalidate", {"user_id": a, "session_id_hashes": [extra["session_id_hash"]]})
        assert ended.get_json() == {"invalidated": [extra["session_id_hash"]]}
        assert api_b.post("/session/invalidate-all", {"user_id": b}).get_json() == {
            "invalidated": [sessions[b]["session_id_hash"]]
        }
        assert api_a.post("/session/validate", {"token_hash": sessions[a]["session_id_hash"]}).get_json()["valid"]
        assert api_b.post("/session/validate", {"token_hash": sessions[b]["session_id_hash"]}).get_json() == {
            "valid": False
        }
        services.worker.run_once()
        kinds = [(e["type"], e["user_id"]) for e in events.drain()]
        assert ("global-logout", b) in kinds and ("session-invalidated", a) in kinds
        assert ("tokens-revoked", a) in kinds and ("tokens-revoked", b) in kinds
    finally:
        events.pubsub.close()
        for key in raw.scan_iter(match=f"{prefix}*"):
            raw.delete(key)
        raw.close()
