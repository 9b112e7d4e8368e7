"""An upgrade from the first version's key layout: everybody signs in again, old keys are purged."""

from __future__ import annotations

import json

import pytest

from sso.digests import new_token, token_hash

pytestmark = pytest.mark.topologies


def write_first_version_session(redis, prefix: str, user_id: str = "42") -> tuple[str, list[str]]:
    """The keys the first version wrote for one session with one refresh family (its layout)."""
    token = new_token(32)
    sid = token_hash(token)
    base = f"{prefix}{{{user_id}}}:"
    written = [f"{base}session:{sid}", f"{base}sessions", f"{base}families:{sid}", f"{base}family:f1", f"{base}jtis:f1",
               f"{prefix}sid:{sid}", f"{prefix}rt:{token_hash('r')}", f"{prefix}code:{token_hash('c')}",
               f"{prefix}jti:j1"]  # fmt: skip
    redis.hset(written[0], mapping={"user_id": user_id, "created_at": 1, "last_active_at": 1, "expires_at": 2**31})
    redis.zadd(written[1], {sid: 2**31})
    redis.sadd(written[2], "f1")
    redis.hset(written[3], mapping={"sid": sid, "client_id": "fluxer"})
    redis.zadd(written[4], {"j1": 2**31})
    redis.set(written[5], user_id)
    redis.set(written[6], f"{user_id} f1")
    redis.hset(written[7], "data", "{}")
    redis.set(written[8], "1")
    for key in written:
        redis.expire(key, 3600)
    return sid, written


def test_first_version_sessions_are_not_valid_after_the_upgrade(api, redis, prefix):
    """A session of the old layout is unknown to the new one: its user signs in again."""
    sid, _ = write_first_version_session(redis, prefix)
    assert api.post("/session/validate", {"token_hash": sid}).get_json() == {"valid": False}
    assert api.client.get("/session/list/42", headers=api.headers).get_json() == {"sessions": []}


def test_purge_legacy_deletes_exactly_the_old_layout(app, api, redis, prefix):
    """`sso purge-legacy` counts (--dry-run) and deletes the old keys and leaves the new ones."""
    _, old = write_first_version_session(redis, prefix)
    new = api.create("42")
    before = set(redis.scan_iter(match=f"{prefix}*"))
    runner = app.test_cli_runner()
    counted = runner.invoke(args=["sso", "purge-legacy", "--dry-run"])
    assert json.loads(counted.output) == {"legacy_keys": len(old), "deleted": 0}
    assert set(redis.scan_iter(match=f"{prefix}*")) == before
    purged = runner.invoke(args=["sso", "purge-legacy"])
    assert json.loads(purged.output) == {"legacy_keys": len(old), "deleted": len(old)}
    assert set(redis.scan_iter(match=f"{prefix}*")) == before - set(old)
    assert api.post("/session/validate", {"token_hash": new["session_id_hash"]}).get_json()["valid"] is True
