"""The store's key layout and scripts, called directly on a real Redis of each topology."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import pytest

from sso.digests import b64url
from sso.store import FAMILIES_PER_SESSION, LEGACY_WINDOW, MARKS_PER_SESSION, RedisStore, Revoked
from sso.store.layout import (
    BAND,
    BUCKET_TAGS,
    RefreshToken,
    code_bucket,
    compute_bucket_tags,
    draw_session_token,
    sid_bucket,
    user_bucket,
)
from sso.store.scripts import LUA_DIR
from sso.store.sessions import MAX_CHANGED_RETRIES

pytestmark = pytest.mark.topologies

FIELDS = {"client_ip": "", "user_agent": "", "platform": "", "claims": "{}"}


def create(store, user_id: str, now: float, ttl: int = 3600, sid: str = "") -> tuple[str, list[str]]:
    sid = sid or store.new_session_token(user_id)[1]
    return sid, store.create_session(sid, user_id, now, int(now) + ttl, FIELDS)


def capped(services, cap: int) -> RedisStore:
    """The service's store with another session cap: the same Redis and prefix, as after a restart."""
    store = services.store
    return RedisStore(store.redis, store.prefix, wait_for_replica=store.runner.wait_for_replica,
                      max_sessions_per_user=cap)  # fmt: skip


def sids_in_order(user_id: str, n: int) -> list[str]:
    """``n`` session ids of the user, ascending: the index's member order alone would pick the first."""
    return sorted(draw_session_token(user_id)[1] for _ in range(n))


def family_fields(redis, store, sid: str) -> list[str]:
    """The record's families, single-token marks and session-wide ended-family mark ``y``."""
    return [f for f in redis.hkeys(store.keys.session(sid)) if f.startswith(("f:", "j:", "x:")) or f == "y"]


# -- the layout -----------------------------------------------------------------------


def test_bucket_tags_are_the_computed_ones_one_per_band():
    """The written-out tag table is what the rule computes, and bucket b's tag hashes into band b."""
    from redis.crc import key_slot

    assert compute_bucket_tags() == BUCKET_TAGS
    assert [key_slot(tag.encode()) // BAND for tag in BUCKET_TAGS] == list(range(256))


def test_session_tokens_hash_into_their_users_bucket():
    """A drawn token's SHA-256 starts with the user's bucket byte, and the hash is the SPEC's sid."""
    for user in ("42", "1234567890", "a-b_C"):
        token, sid = draw_session_token(user)
        assert sid == b64url(hashlib.sha256(token.encode()).digest()) and sid_bucket(sid) == user_bucket(user)
        assert len(token) == 43 and len(sid) == 43


def test_malformed_identifiers_have_no_bucket():
    """Anything but canonical base64url of the right length names no key."""
    for bad in ("", "x" * 42, "x" * 44, "!" * 43, "a" * 600, "A" * 42 + "B"):
        assert sid_bucket(bad) is None
    assert code_bucket("short") is None
    assert RefreshToken.parse("garbage") is None and RefreshToken.parse("A" * 88) is None


def test_refresh_token_format_round_trips():
    """A refresh token carries sid, family, generation and MAC, and nothing else."""
    _, sid = draw_session_token("42")
    token = RefreshToken(sid, "AAAAAAAAAAAA", 7, "ab" * 20)
    encoded = token.encode()
    assert RefreshToken.parse(encoded) == token and token.bucket == user_bucket("42")
    assert "." not in encoded and len(encoded) == 88


@pytest.mark.parametrize(
    "key, data, digest",
    [
        (b"\x0b" * 20, b"Hi There", "b617318655057264e28bc0b6fb378c8ef146be00"),
        (b"Jefe", b"what do ya want for nothing?", "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        (b"\xaa" * 20, b"\xdd" * 50, "125d7342b9ac11cd91a39af48aa17b4f63f175d3"),
        (bytes(range(1, 26)), b"\xcd" * 50, "4c9007f4026250c6bc8414f9bf50c86c2d7235da"),
    ],
    ids=["rfc2202-1", "rfc2202-2", "rfc2202-3", "rfc2202-4"],
)
def test_lua_hmac_sha1_matches_rfc_2202(redis, key, data, digest):
    """The scripts' HMAC-SHA1 gives RFC 2202's test vectors (and Python's hmac agrees)."""
    lib = (LUA_DIR / "lib.lua").read_text()
    script = lib + "\nreturn hmac_sha1(hex2bin(ARGV[1]), hex2bin(ARGV[2]))"
    assert redis.eval(script, 0, key.hex(), data.hex()) == digest
    assert hmac.new(key, data, hashlib.sha1).hexdigest() == digest


def test_lua_hmac_sha1_agrees_with_python_for_every_key_length(redis):
    """Keys of 0 to 64 bytes (the scripts XOR only the key's bytes and pad the rest)."""
    lib = (LUA_DIR / "lib.lua").read_text()
    script = lib + "\nreturn hmac_sha1(hex2bin(ARGV[1]), hex2bin(ARGV[2]))"
    for length in range(65):
        key, data = secrets.token_bytes(length), secrets.token_bytes(length + 7)
        assert redis.eval(script, 0, key.hex(), data.hex()) == hmac.new(key, data, hashlib.sha1).hexdigest(), length


def test_every_script_declares_its_keys():
    """No script builds a key name: every call's key is a KEYS entry or a variable holding one, never
    a concatenation, a literal or an ARGV value."""
    import re

    calls = 0
    for path in LUA_DIR.glob("*.lua"):
        for command, key in re.findall(r"redis\.call\('([A-Z]+)',\s*([^,)]+)", path.read_text()):
            if command in ("PUBLISH", "TIME"):  # a channel, no key
                continue
            calls += 1
            assert re.fullmatch(r"KEYS\[[0-9i +-]+\]|[a-z_]+", key.strip()), (path.name, command, key)
        for name, value in re.findall(r"local (\w+(?:, \w+)*) = (KEYS[^\n]*)", path.read_text()):
            assert "ARGV" not in value, (path.name, name)
    assert calls > 40


# -- sessions -------------------------------------------------------------------------


def test_the_101st_session_evicts_the_least_recently_active(services, redis, events, clock):
    """At the cap, creating one more ends the least recently active session and publishes it."""
    store, now = services.store, int(clock.now)
    sids = [create(store, "42", now + i)[0] for i in range(100)]
    store.touch_many([("42", sids[0], now + 500)], interval=1)  # the oldest is now the most recent
    events.drain(0.1)
    response = services.sessions.create("42")
    services.worker.flush()
    assert redis.zcard(store.keys.index("42")) == 100
    assert not redis.exists(store.keys.session(sids[1])) and redis.exists(store.keys.session(sids[0]))
    published = events.drain()
    assert [e["type"] for e in published] == ["session-invalidated", "session-created"]
    assert published[0]["session_id_hashes"] == [sids[1]] and published[0]["reason"] == "evicted"
    assert published[1]["session_id_hashes"] == [response[1].session_id_hash]


def test_sessions_that_expired_do_not_count_toward_the_cap(services, redis, clock):
    """Index members idle longer than a session lives are pruned, not evicted."""
    store, now = services.store, int(clock.now)
    for i in range(100):
        create(store, "7", now + i, ttl=60)
    sid, evicted = create(store, "7", now + 200, ttl=60)
    assert evicted == [] and redis.zrange(store.keys.index("7"), 0, -1) == [sid]


def test_an_expired_session_still_indexed_does_not_count_toward_the_cap(services, redis, clock):
    """A session used after its creation stays in the index (scored by activity) once its record has
    expired on its fixed expires_at: at the cap it is dropped, and no live session is evicted for it."""
    store, now = capped(services, 2), int(clock.now)
    a, _ = create(store, "7", now, ttl=60)
    b, _ = create(store, "7", now + 1)
    assert store.touch_many([("7", a, now + 2)], interval=1) == 1  # a now ranks above b
    redis.pexpire(store.keys.session(a), 1)  # its record ends; the index keeps it
    while redis.exists(store.keys.session(a)):
        time.sleep(0.005)
    c, evicted = create(store, "7", now + 3)
    assert evicted == []
    assert sorted(redis.zrange(store.keys.index("7"), 0, -1)) == sorted([b, c])
    assert redis.exists(store.keys.session(b), store.keys.session(c)) == 2


def test_only_live_sessions_are_evicted_however_many_are_dead(services, redis, clock):
    """Dead members ranked below and above the live ones (held under a larger cap): only the least
    recently active live one goes."""
    store, now = services.store, int(clock.now)
    sids = [create(store, "7", now + i)[0] for i in range(6)]
    store.touch_many([("7", sids[0], now + 10), ("7", sids[1], now + 11)], interval=1)
    for sid in (sids[0], sids[3], sids[5]):  # dead: two recently active, one never used since
        redis.delete(store.keys.session(sid))
    new, evicted = create(capped(services, 3), "7", now + 12)
    assert [e.sid for e in evicted] == [sids[2]]
    assert sorted(redis.zrange(store.keys.index("7"), 0, -1)) == sorted([sids[1], sids[4], new])


def test_a_tie_in_last_activity_evicts_the_oldest_created(services, redis, clock):
    """Activity is kept to the second: of two sessions last active in the same second, the older goes,
    whatever the order of their ids."""
    store, now = capped(services, 2), int(clock.now)
    later, older = sids_in_order("7", 2)  # the member order alone would evict ``later``
    create(store, "7", now, sid=older)
    create(store, "7", now + 1, sid=later)
    assert store.touch_many([("7", older, now + 1)], interval=1) == 1  # both last active at now + 1
    _, evicted = create(store, "7", now + 2)
    assert [e.sid for e in evicted] == [older] and redis.exists(store.keys.session(later))


@pytest.mark.parametrize("settings_overrides", [{"max_sessions_per_user": 2}])
def test_of_two_sessions_created_in_the_same_second_the_first_is_evicted(services, redis, events, clock,
                                                                         monkeypatch):  # fmt: skip
    """Created in the same second and never used since: the one created first is the least recently active."""
    second, first = (draw_session_token("7") for _ in range(2))
    if first[1] < second[1]:
        first, second = second, first  # the member order alone would evict ``second``
    drawn = iter([first, second, draw_session_token("7")])
    monkeypatch.setattr(services.store, "new_session_token", lambda user_id: next(drawn))
    clock.now += 0.2
    services.sessions.create("7")
    clock.now += 0.5
    services.sessions.create("7")
    services.worker.flush()
    events.drain(0.1)
    clock.now += 0.1
    services.sessions.create("7")
    services.worker.flush()
    published = events.drain()
    assert published[0]["session_id_hashes"] == [first[1]] and published[0]["reason"] == "evicted"
    assert redis.exists(services.store.keys.session(second[1]))


def test_a_lowered_cap_evicts_the_whole_surplus_in_one_creation(services, redis, clock):
    """Restarted with a smaller cap, the next creation ends every session above it, least recently
    active first, and the user holds exactly the cap."""
    store, now = services.store, int(clock.now)
    sids = [create(store, "7", now + i)[0] for i in range(30)]
    new, evicted = create(capped(services, 5), "7", now + 30)
    assert [e.sid for e in evicted] == sids[:26]
    assert sorted(redis.zrange(store.keys.index("7"), 0, -1)) == sorted([*sids[26:], new])
    assert not any(redis.exists(store.keys.session(sid)) for sid in sids[:26])


def test_creation_at_the_cap_outlasts_a_login_storm(services, redis, clock, monkeypatch):
    """Sessions created between the rounds count as live; after the last round the session is created
    all the same, every eviction is reported, and the racing creation is left to the next one."""
    store, now = capped(services, 1), int(clock.now)
    first, _ = create(store, "7", now)
    real_run, during = store.runner.run, []

    def storm(name, keys, args=()):
        if name == "create_session" and len(keys) > 3:  # a round that declares the index's records
            during.append(create(capped(services, 100), "7", now)[0])
        return real_run(name, keys, args)

    monkeypatch.setattr(store.runner, "run", storm)
    new, evicted = create(store, "7", now + 1)
    assert len(during) == MAX_CHANGED_RETRIES - 1
    assert [e.sid for e in evicted] == [first, *during[:-1]]
    assert sorted(redis.zrange(store.keys.index("7"), 0, -1)) == sorted([during[-1], new])


def test_a_retried_creation_at_the_cap_reports_its_evictions(services, redis, clock):
    """The same request run again (its reply lost) creates nothing more and reports what it evicted."""
    store, now = services.store, int(clock.now)
    sids = [create(store, "7", now + i)[0] for i in range(3)]
    _, new = store.new_session_token("7")
    keys = [store.keys.session(new), store.keys.index("7"), store.keys.request(user_bucket("7"), "req-3")]
    args = [new, "7", now + 5, now + 3600, 3600, "", "", "", "{}", 2, 3600, now + 5, 0]  # at a cap of 2
    full = store.runner.run("create_session", keys, args)
    assert full[:2] == ["full", ""] and sorted(full[2:]) == sorted(sids)
    declared = [keys + [store.keys.session(s) for s in sids], args + sids]
    assert store.runner.run("create_session", *declared) == ["ok", f"{sids[0]} {sids[1]}"]
    assert store.runner.run("create_session", *declared) == ["ok", f"{sids[0]} {sids[1]}"]
    assert redis.zcard(store.keys.index("7")) == 2


def test_invalidate_all_at_the_cap_is_one_short_script(services, clock):
    """invalidate-all over 100 sessions, each with families, ends all well inside the 1 s socket timeout."""
    store, now = services.store, int(clock.now)
    sids = [create(store, "42", now)[0] for _ in range(100)]
    started = time.perf_counter()
    ended = store.invalidate_all("42", [])
    assert time.perf_counter() - started < 0.5
    assert sorted(ended) == sorted(sids)
    assert store.list_sessions("42") == []


def test_invalidate_all_refuses_when_a_session_appeared_since_the_read(services, redis, clock):
    """The script changes nothing if the index holds a session the caller did not declare."""
    store, now = services.store, int(clock.now)
    a, _ = create(store, "42", now)
    b, _ = create(store, "42", now)
    keys = [store.keys.index("42"), store.keys.request(user_bucket("42"), "req-1"), store.keys.session(a)]
    assert store.runner.run("invalidate", keys, ["42", "all", 1, a]) == ["changed"]
    assert redis.exists(store.keys.session(a), store.keys.session(b)) == 2
    assert sorted(store.invalidate_all("42", [])) == sorted([a, b])


def test_invalidate_all_outlasts_a_login_storm(services, redis, clock, monkeypatch):
    """A session created before every round: after the last one the call still answers, having ended
    every session older than the call; only the one created during its last round remains."""
    store, now = services.store, int(clock.now)
    older = {create(store, "42", now)[0] for _ in range(3)}
    real_end, during = store.sessions._end, []

    def storm(user_id, mode, targets, kept):
        if mode == "all":
            during.append(create(store, "42", now)[0])  # created after the round read the index
        return real_end(user_id, mode, targets, kept)

    monkeypatch.setattr(store.sessions, "_end", storm)
    ended = set(store.invalidate_all("42", []))
    assert len(during) == MAX_CHANGED_RETRIES
    assert older <= ended and ended == older | set(during[:-1])
    assert redis.zrange(store.keys.index("42"), 0, -1) == [during[-1]]
    assert not any(redis.exists(store.keys.session(sid)) for sid in ended)


def test_a_retried_invalidation_answers_the_same(services, redis, clock):
    """The same request run twice (a reply lost to a timeout) reports the ended sessions both times."""
    store, now = services.store, int(clock.now)
    a, _ = create(store, "42", now)
    keys = [store.keys.index("42"), store.keys.request(user_bucket("42"), "req-2"), store.keys.session(a)]
    first = store.runner.run("invalidate", keys, ["42", "all", 1, a])
    again = store.runner.run("invalidate", keys, ["42", "all", 1, a])
    assert first == again == ["ended", a]
    assert 0 < redis.ttl(keys[1]) <= 60


def test_invalidate_leaves_other_users_sessions_alone(services, clock):
    """A sid of another user (same bucket or not) is never ended through this user's call."""
    store, now = services.store, int(clock.now)
    theirs, _ = create(store, "43", now)
    assert store.invalidate("42", [theirs]) == []
    assert store.find_session(theirs) is not None


def test_touch_moves_activity_forward_only_and_never_resurrects(services, redis, clock):
    """An activity write updates record and index, never goes backwards, never recreates a record."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    assert store.touch_many([("42", sid, now + 10)], interval=5) == 1
    assert store.touch_many([("42", sid, now + 8)], interval=0) == 0
    assert redis.zscore(store.keys.index("42"), sid) == now + 10
    store.invalidate("42", [sid])
    assert store.touch_many([("42", sid, now + 900)], interval=5) == 0
    assert not redis.exists(store.keys.session(sid))


# -- codes and refresh families -------------------------------------------------------


def code_for(store, sid: str, clock) -> str:
    issued = store.issue_code(sid=sid, binding={"sid": sid}, clock=clock.now, fresh_login=False, max_age=None,
                              auth_after=None, ttl=60)  # fmt: skip
    assert issued.outcome == "ok" and code_bucket(issued.code) == sid_bucket(sid)
    return issued.code


def redeem(store, code: str, sid: str, now: int):
    return store.redeem_code(code, user_id="42", sid=sid, client_id="fluxer", scope="openid", now=now,
                             expires_at=now + 5000, access_expires_at=now + 900, keep=900)  # fmt: skip


def test_code_replay_ends_what_the_first_redemption_started(services, redis, clock):
    """A second redemption answers 'used' and ends the family: its access token is revoked by the
    session-wide mark ``y``, raised to that token's exp."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    code = code_for(store, sid, clock)
    first = redeem(store, code, sid, now)
    assert first.outcome == "ok" and first.jti.endswith(".0")
    fid = first.jti.split(".")[0]
    replay = redeem(store, code, sid, now)
    assert replay.outcome == "used" and replay.revoked_family == fid
    assert replay.revoked == Revoked("42", sid, (first.jti,), now + 900)  # what tokens-revoked names
    assert family_fields(redis, store, sid) == ["y"]
    assert int(redis.hget(store.keys.session(sid), "y")) == now + 900
    assert store.access_token_state(first.jti, "42", sid, now)[0] is True
    assert store.rotate_refresh(first.refresh_token, now=now, grace=0, client_id="fluxer", scope="",
                                access_expires_at=now + 900).outcome == "invalid"  # fmt: skip


def test_code_redemption_retry_gets_the_same_answer(services, clock):
    """The same redemption run twice (same marker: a redis-py retry) is not a replay."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    code = code_for(store, sid, clock)
    record, code_key = store.keys.session(sid), store.codes.key(code)
    args = [f'{{"fid":"AAAAAAAAAAAA","x":{now + 900}}}', 900, now, "AAAAAAAAAAAA", sid, "fluxer", "openid",
            now + 5000, "00" * 20, now + 900, FAMILIES_PER_SESSION]  # fmt: skip
    first = store.runner.run("redeem_code", [code_key, record], args)
    again = store.runner.run("redeem_code", [code_key, record], args)
    assert first[0] == again[0] == "ok" and first[4] == again[4]


def test_a_thousand_rotations_keep_the_family_the_same_size(services, redis, clock):
    """Rotation stores nothing per generation: key count and MEMORY USAGE stay flat; reuse is still seen
    and names the tokens of the last lifetime (one rotation a second, access tokens living 60 s)."""
    start = int(clock.now)
    sid, _ = create(services.store, "42", start)
    store, now = services.store, start
    token = store.redeem_code(code_for(store, sid, clock), user_id="42", sid=sid, client_id="fluxer",
                              scope="openid", now=now, expires_at=now + 5000, access_expires_at=now + 60,
                              keep=900).refresh_token  # fmt: skip
    first_spent = token

    def rotate(presented: str):
        nonlocal now
        now += 1
        return store.rotate_refresh(presented, now=now, grace=0, client_id="fluxer", scope="",
                                    access_expires_at=now + 60)  # fmt: skip

    for _ in range(10):
        token = rotate(token).successor
    record, field = store.keys.session(sid), f"f:{RefreshToken.parse(token).fid}"
    keys_before = sorted(redis.scan_iter(match=f"{store.prefix}*"))
    fields_before, width_before = redis.hlen(record), redis.hstrlen(record, field)
    memory_before = redis.memory_usage(record, samples=0)
    for _ in range(990):
        rotation = rotate(token)
        assert rotation.outcome == "ok"
        token = rotation.successor
    assert sorted(redis.scan_iter(match=f"{store.prefix}*")) == keys_before
    assert (redis.hlen(record), redis.hstrlen(record, field)) == (fields_before, width_before)  # to the byte
    # MEMORY USAGE also counts the allocator's slack of the value just written, which depends on how the
    # argument arrived in Redis' query buffer: at most one 16-byte size class either way
    assert abs(redis.memory_usage(record, samples=0) - memory_before) <= 16
    reuse = rotate(first_spent)
    assert reuse.outcome == "reuse"  # generation 0, spent 1 000 rotations ago
    assert reuse.revoked is not None and reuse.revoked.jtis[-1].endswith(".1000")
    # token n minted at start + n, alive while start + n + 60 > now (59 of them): every one named, and
    # at most those of 30 s more (which, depends on where the checkpoint spans fall against start)
    fid = RefreshToken.parse(token).fid
    alive = {f"{fid}.{n}" for n in range(1001) if start + n + 60 > now}
    assert len(alive) == 59 and alive <= set(reuse.revoked.jtis)
    assert len(reuse.revoked.jtis) <= len(alive) + 30 + 1
    assert rotate(token).outcome == "invalid"  # the family is gone with the reuse


def test_a_forged_refresh_token_is_invalid_and_harms_nobody(services, clock):
    """Without the family's key no MAC is right: a forged earlier generation is not 'reuse'."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    real = RefreshToken.parse(redeem(store, code_for(store, sid, clock), sid, now).refresh_token)
    assert real is not None
    forged = RefreshToken(real.sid, real.fid, 0, "00" * 20).encode()
    kwargs = dict(now=now, grace=0, client_id="fluxer", scope="", access_expires_at=now + 900)
    assert store.rotate_refresh(forged, **kwargs).outcome == "invalid"
    assert store.rotate_refresh(real.encode(), **kwargs).outcome == "ok"


def test_rotation_retry_of_the_same_request_is_not_reuse(services, clock):
    """The same rotation request run twice (same request id) answers ok twice with one successor."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    token = RefreshToken.parse(redeem(store, code_for(store, sid, clock), sid, now).refresh_token)
    assert token is not None
    args = [token.sid, token.fid, token.gen, token.mac, now, 0, "fluxer", "", "same-request", now + 900]
    first = store.runner.run("rotate_refresh", [store.keys.session(sid)], args)
    again = store.runner.run("rotate_refresh", [store.keys.session(sid)], args)
    assert first[0] == again[0] == "ok" and first[8:] == again[8:]
    other = store.runner.run("rotate_refresh", [store.keys.session(sid)], [*args[:8], "other-request", *args[9:]])
    assert other[0] == "reuse"


def test_families_per_session_are_capped(services, redis, clock):
    """The 33rd code exchange on one session ends its oldest family; the record stays bounded."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    tokens = []
    for i in range(FAMILIES_PER_SESSION + 1):
        clock.now = now + i
        tokens.append(redeem(store, code_for(store, sid, clock), sid, now + i))
    assert tokens[-1].revoked_family == tokens[0].jti.split(".")[0]
    families = [f for f in family_fields(redis, store, sid) if f.startswith("f:")]
    assert len(families) == FAMILIES_PER_SESSION
    kwargs = dict(now=now + 40, grace=0, client_id="fluxer", scope="", access_expires_at=now + 940)
    assert store.rotate_refresh(tokens[0].refresh_token, **kwargs).outcome == "invalid"
    assert store.rotate_refresh(tokens[1].refresh_token, **kwargs).outcome == "ok"
    assert store.access_token_state(tokens[0].jti, "42", sid, now + 40)[0] is True


# fixed fields of a record: user_id, created_at, last_active_at, expires_at, client_ip, user_agent, platform,
# claims, bc (the clients it issued tokens to), y (the ended-family mark)
FIXED_FIELDS = 10


def test_code_exchanges_beyond_the_cap_never_refuse_and_the_record_stays_bounded(services, redis, clock):
    """The load test's browser: 32 + 300 code exchanges on one session within one access-token lifetime
    all succeed; the record holds 32 families and one mark however many families have ended; every access
    token of an ended family is revoked and every one of a live family is active."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    record, redeemed = store.keys.session(sid), []
    for i in range(FAMILIES_PER_SESSION + 300):
        clock.now = now + i
        redeemed.append(redeem(store, code_for(store, sid, clock), sid, now + i))
        assert redeemed[-1].outcome == "ok", i
        assert redis.hlen(record) <= FIXED_FIELDS + FAMILIES_PER_SESSION + MARKS_PER_SESSION
    assert all(r.revoked_family == redeemed[i].jti.split(".")[0] for i, r in enumerate(redeemed[32:]))
    assert redis.hlen(record) == FIXED_FIELDS + FAMILIES_PER_SESSION  # no per-family mark left behind
    at = now + FAMILIES_PER_SESSION + 300
    states = [store.access_token_state(r.jti, "42", sid, at)[0] for r in redeemed]
    assert states == [True] * 300 + [False] * FAMILIES_PER_SESSION
    # the newest ended family's token lives until now + 299 + 900: so does the revocation of all of them
    assert int(redis.hget(record, "y")) == now + 299 + 900
    assert store.access_token_state(redeemed[0].jti, "42", sid, now + 1198)[0] is True


def test_the_ended_family_mark_is_never_lowered(services, redis, clock):
    """Ending a family whose tokens expire early must not shorten the revocation of an earlier one: ``y``
    is only ever raised (revoking an early token of an ended family again, too)."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    first = redeem(store, code_for(store, sid, clock), sid, now)
    fid = first.jti.split(".")[0]
    for n in range(MARKS_PER_SESSION):
        store.revoke_access(f"{fid}.{n + 1}", "42", sid, now + 900, now)
    store.revoke_access(f"{fid}.{MARKS_PER_SESSION + 1}", "42", sid, now + 900, now)  # ends the family: y = 900
    store.revoke_access(first.jti, "42", sid, now + 10, now)  # an early token, exp 10 s
    record = store.keys.session(sid)
    assert int(redis.hget(record, "y")) == now + 900
    short = store.redeem_code(code_for(store, sid, clock), user_id="42", sid=sid, client_id="fluxer",
                              scope="openid", now=now, expires_at=now + 5000, access_expires_at=now + 20,
                              keep=900)  # fmt: skip
    store.revoke_refresh(short.refresh_token, None, now)  # a family whose only token lives 20 s
    assert int(redis.hget(record, "y")) == now + 900
    assert store.access_token_state(f"{fid}.{MARKS_PER_SESSION + 1}", "42", sid, now + 899)[0] is True


def test_single_token_revocations_are_bounded(services, redis, clock):
    """Past MARKS_PER_SESSION live marks, revoking one more token ends its whole family instead."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    first = redeem(store, code_for(store, sid, clock), sid, now)
    fid = first.jti.split(".")[0]
    for n in range(MARKS_PER_SESSION):
        assert store.revoke_access(f"{fid}.{n}", "42", sid, now + 900, now).jtis == (f"{fid}.{n}",)
    beyond = store.revoke_access(f"{fid}.{MARKS_PER_SESSION}", "42", sid, now + 900, now)
    assert beyond.jtis == (f"{fid}.{MARKS_PER_SESSION}", f"{fid}.0")  # and the family's own token
    fields = family_fields(redis, store, sid)
    assert f"f:{fid}" not in fields and "y" in fields
    assert sum(f.startswith("j:") for f in fields) == MARKS_PER_SESSION
    assert store.access_token_state(f"{fid}.{MARKS_PER_SESSION + 1}", "42", sid, now)[0] is True  # no j: mark
    clock.now = now + 901  # every mark has expired: the next write prunes them all
    redeem(store, code_for(store, sid, clock), sid, now + 901)
    assert [f for f in family_fields(redis, store, sid) if not f.startswith("f:")] == ["y"]  # one stale field


def test_access_tokens_never_outlive_their_family(services, redis, clock):
    """The clamp that makes ``y`` exact: an access token recorded near its family's expiry (code exchange
    or rotation) gets exp == the family's expiry, so a family that expires leaves no live token behind."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    record = store.keys.session(sid)
    first = store.redeem_code(code_for(store, sid, clock), user_id="42", sid=sid, client_id="fluxer",
                              scope="openid", now=now, expires_at=now + 100, access_expires_at=now + 900,
                              keep=900)  # fmt: skip
    assert first.family_expires_at == now + 100
    fid = first.jti.split(".")[0]
    assert int(redis.hget(record, f"f:{fid}").split()[4]) == now + 100  # x: the latest exp recorded
    rotation = store.rotate_refresh(first.refresh_token, now=now + 90, grace=0, client_id="fluxer", scope="",
                                    access_expires_at=now + 990)  # fmt: skip
    assert rotation.outcome == "ok" and rotation.family_expires_at == now + 100
    assert int(redis.hget(record, f"f:{fid}").split()[4]) == now + 100
    revoked = store.revoke_refresh(rotation.successor, None, now + 95)[1]
    assert revoked is not None and revoked.expires_at == now + 100  # what tokens-revoked names


def test_per_family_marks_of_the_previous_store_still_revoke(services, redis, clock):
    """A record written before ``y`` holds ``x:<fid>`` marks: the token stays revoked, and the next script
    that reads the record folds the mark into ``y`` and drops it (an upgrade brings no token back)."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    record = store.keys.session(sid)
    redis.hset(record, "x:AAAAAAAAAAAA", now + 600)  # an ended family of the previous store
    assert store.access_token_state("AAAAAAAAAAAA.3", "42", sid, now)[0] is True
    redeem(store, code_for(store, sid, clock), sid, now)
    assert not redis.hexists(record, "x:AAAAAAAAAAAA") and int(redis.hget(record, "y")) == now + 600
    assert store.access_token_state("AAAAAAAAAAAA.3", "42", sid, now + 599)[0] is True


def test_ending_a_session_deletes_everything_it_owned(services, redis, clock, prefix):
    """After invalidation only the request's own 60 s answer mark is left under the prefix."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    redeem(store, code_for(store, sid, clock), sid, now)
    assert store.invalidate("42", [sid]) == [sid]
    left = [k for k in redis.scan_iter(match=f"{prefix}*") if ":c:" not in k]
    assert [k.split(":")[-2] for k in left] == ["r"]


# What the version before checkpoints matched a family with (its decode_family in lua/lib.lua).
PREVIOUS_FAMILY_PATTERN = "^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%x+) (%S+) (%S+) ?(.*)$"


def as_previous_version(redis, record: str, fid: str) -> None:
    """Rewrite a family as the previous version writes it: q is the request id alone, no checkpoints."""
    fields = redis.hget(record, f"f:{fid}").split(" ", 10)
    fields[8] = fields[8].split("/")[0]
    redis.hset(record, f"f:{fid}", " ".join(fields))


def test_the_previous_version_reads_a_family_with_checkpoints(services, redis, clock):
    """Rolling deploy: the checkpoints ride on q, the one field the previous version only compares with a
    request id of its own, so it still reads the MAC key, client and scope of a new family."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now)
    token = redeem(store, code_for(store, sid, clock), sid, now).refresh_token
    store.rotate_refresh(token, now=now, grace=0, client_id="fluxer", scope="", access_expires_at=now + 900)
    record, fid = store.keys.session(sid), RefreshToken.parse(token).fid
    text = redis.hget(record, f"f:{fid}")
    assert text.count("/") == 6  # the checkpoints
    got = redis.eval("return {string.match(ARGV[1], ARGV[2])}", 1, record, text, PREVIOUS_FAMILY_PATTERN)
    assert [int(v) for v in got[:2]] == [1, 2]  # generation, tokens minted
    assert (len(got[7]), got[8].split("/")[0], got[9], got[10]) == (40, got[8][:24], "fluxer", "openid")


def test_a_family_written_by_the_previous_version_rotates_and_names_its_tokens(services, redis, clock):
    """A family without checkpoints (written before them, or rotated by an old instance during a rolling
    deploy) is not refused for its history: it rotates and gains checkpoints, and when it ends its event
    names its last LEGACY_WINDOW tokens, which hold every one still alive."""
    store, now = services.store, int(clock.now)
    sid, _ = create(store, "42", now, ttl=10_000)
    first = store.redeem_code(code_for(store, sid, clock), user_id="42", sid=sid, client_id="fluxer",
                              scope="openid", now=now, expires_at=now + 9000, access_expires_at=now + 60,
                              keep=900)  # fmt: skip
    token, record, fid = first.refresh_token, store.keys.session(sid), first.jti.split(".")[0]
    width = redis.hstrlen(record, f"f:{fid}")
    for _ in range(400):  # 401 tokens, 60 of them alive
        now += 1
        token = store.rotate_refresh(token, now=now, grace=0, client_id="fluxer", scope="",
                                     access_expires_at=now + 60).successor  # fmt: skip
    as_previous_version(redis, record, fid)
    rotation = store.rotate_refresh(token, now=now + 1, grace=0, client_id="fluxer", scope="",
                                    access_expires_at=now + 61)  # fmt: skip
    assert rotation.outcome == "ok" and rotation.jti == f"{fid}.401"
    assert redis.hstrlen(record, f"f:{fid}") == width  # checkpoints again
    revoked = store.revoke_refresh(rotation.successor, None, now + 1)[1]
    assert revoked is not None
    assert revoked.jtis == tuple(f"{fid}.{i}" for i in range(402 - LEGACY_WINDOW, 402))
