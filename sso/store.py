"""The only module that speaks Redis: key builders, TTLs and Lua scripts.

Key layout (``P`` is ``SSO_REDIS_PREFIX``)::

    P{<user>}:session:<sid>     hash   one session record            TTL = session expiry
    P{<user>}:sessions          zset   sid -> expires_at (listing)   TTL = latest expiry
    P{<user>}:families:<sid>    set    refresh families of a session TTL = session expiry
    P{<user>}:family:<fid>      hash   one refresh rotation family   TTL = family expiry
    P{<user>}:jtis:<fid>        zset   access token ids of a family, scored by exp; TTL = the latest exp
    Psid:<sid>                  string sid -> user id                TTL = session expiry
    Prt:<hash>                  string refresh token hash -> "<user> <fid>"
    Pcode:<hash>                hash   authorization code            TTL = 60 s
    Pjti:<jti>                  string revoked access token          TTL = until its exp
    Prl:<limit>:<window>:<addr> string failures in one rate window   TTL = the window

Every per-user key carries the user id as a hash tag, so per-user multi-key
operations stay in one Redis Cluster slot. Lookups that start from a token
hash (``sid:``, ``rt:``, ``code:``, ``jti:``) cannot know the user in advance;
scripts follow those pointers into the user's keys, which is atomic on the
supported topology (a single Redis/Valkey primary). Every write carries a TTL,
and only hashes of tokens are stored, never the tokens.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

# Lua: delete one refresh family, unlink it from its session and deny the
# access tokens minted from it (RFC 7009 §2.1) that have not expired yet, each
# until its own exp. The family's jtis are a zset scored by exp.
_REVOKE_FAMILY_FN = """
local function revoke_family(base, fam, jti_prefix, now)
  local fid = string.sub(fam, #base + 8)
  local sid = redis.call('HGET', fam, 'sid')
  if sid then redis.call('SREM', base .. 'families:' .. sid, fid) end
  local jtis = base .. 'jtis:' .. fid
  local live = redis.call('ZRANGEBYSCORE', jtis, '(' .. now, '+inf', 'WITHSCORES')
  for i = 1, #live, 2 do
    redis.call('SET', jti_prefix .. live[i], '1', 'EX', tonumber(live[i + 1]) - now)
  end
  redis.call('DEL', jtis)
  return redis.call('DEL', fam)
end

-- Record an access token minted from a family; expired entries are pruned.
local function remember_jti(jtis, jti, exp, now)
  redis.call('ZREMRANGEBYSCORE', jtis, '-inf', now)
  redis.call('ZADD', jtis, exp, jti)
  redis.call('EXPIRE', jtis, math.max(1, exp - now))
end
"""

_CREATE_SESSION = """
-- KEYS: record, index, pointer. ARGV: sid, user, now, expires_at, ttl, ip, ua, platform, claims
redis.call('HSET', KEYS[1], 'user_id', ARGV[2], 'created_at', ARGV[3], 'last_active_at', ARGV[3],
  'expires_at', ARGV[4], 'client_ip', ARGV[6], 'user_agent', ARGV[7], 'platform', ARGV[8], 'claims', ARGV[9])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
local latest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('EXPIRE', KEYS[2], math.max(1, tonumber(latest[2]) - tonumber(ARGV[3])))
return 1
"""

_ACCESS_STATE = """
-- KEYS: revoked-jti marker, session record. Returns {revoked (0|1), expires_at, claims}; nil fields: no session.
return {redis.call('EXISTS', KEYS[1]), unpack(redis.call('HMGET', KEYS[2], 'expires_at', 'claims'))}
"""

# The fields of a session record, in the order _FIND_SESSION returns them.
SESSION_FIELDS = (
    "user_id", "created_at", "last_active_at", "expires_at", "client_ip", "user_agent", "platform", "claims",
)  # fmt: skip

_FIND_SESSION = f"""
-- KEYS: pointer. ARGV: prefix, sid. Returns the record's values in SESSION_FIELDS order, or false.
local user = redis.call('GET', KEYS[1])
if not user then return false end
local rec = redis.call('HMGET', ARGV[1] .. '{{' .. user .. '}}:session:' .. ARGV[2], '{"', '".join(SESSION_FIELDS)}')
if not rec[1] then return false end
return rec
"""

_LIST_SESSIONS = """
-- KEYS: index. ARGV: base, now. Prunes expired members; returns {sid, fields...} pairs.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local rec = redis.call('HGETALL', ARGV[1] .. 'session:' .. sid)
  if #rec > 0 then
    table.insert(out, sid)
    table.insert(out, rec)
  else
    redis.call('ZREM', KEYS[1], sid)
  end
end
return out
"""

_INVALIDATE = (
    _REVOKE_FAMILY_FN
    + """
-- KEYS: index. ARGV: prefix, user, mode ('some' | 'all'), sids...
-- 'some': ARGV[4..] are the sids to end; 'all': ARGV[4..] are the sids to keep.
local prefix, user = ARGV[1], ARGV[2]
local base = prefix .. '{' .. user .. '}:'
local listed = {}
for i = 4, #ARGV do listed[ARGV[i]] = true end
local targets = {}
if ARGV[3] == 'all' then
  for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if not listed[sid] then table.insert(targets, sid) end
  end
else
  for i = 4, #ARGV do table.insert(targets, ARGV[i]) end
end
local ended = {}
for _, sid in ipairs(targets) do
  if redis.call('DEL', base .. 'session:' .. sid) == 1 then table.insert(ended, sid) end
  local pointer = prefix .. 'sid:' .. sid
  if redis.call('GET', pointer) == user then redis.call('DEL', pointer) end
  local families = base .. 'families:' .. sid
  for _, fid in ipairs(redis.call('SMEMBERS', families)) do
    redis.call('DEL', base .. 'family:' .. fid, base .. 'jtis:' .. fid)
  end
  redis.call('DEL', families)
  redis.call('ZREM', KEYS[1], sid)
end
return ended
"""
)

_TOUCH = """
-- KEYS: record. ARGV: at, interval. Never resurrects a deleted session.
local last = redis.call('HGET', KEYS[1], 'last_active_at')
if not last then return 0 end
if tonumber(ARGV[1]) - tonumber(last) < tonumber(ARGV[2]) or tonumber(ARGV[1]) <= tonumber(last) then
  return 0
end
redis.call('HSET', KEYS[1], 'last_active_at', ARGV[1])
return 1
"""

_ISSUE_CODE = """
-- KEYS: session pointer, code. ARGV: prefix, sid, clock, fresh login required ('1'|'0'),
--       max_age ('' = none), auth_after ('' = none), code binding (JSON), code ttl.
-- Stores the code only for a live session that needs no fresh login, adding the session's
-- user_id and auth_time to the binding. Returns {'ok', user, last_active_at}, {'stale'} or {'none'}.
local user = redis.call('GET', KEYS[1])
if not user then return {'none'} end
local rec = redis.call('HMGET', ARGV[1] .. '{' .. user .. '}:session:' .. ARGV[2], 'expires_at', 'created_at',
  'last_active_at')
local clock = tonumber(ARGV[3])
if not rec[1] or tonumber(rec[1]) <= clock then return {'none'} end
local now, created = math.floor(clock), tonumber(rec[2])
if ARGV[4] == '1' or (ARGV[5] ~= '' and now - created > tonumber(ARGV[5]))
    or (ARGV[6] ~= '' and created < tonumber(ARGV[6])) then
  return {'stale'}
end
local binding = cjson.decode(ARGV[7])
binding['user_id'] = user
binding['auth_time'] = created
redis.call('HSET', KEYS[2], 'data', cjson.encode(binding))
redis.call('EXPIRE', KEYS[2], ARGV[8])
return {'ok', user, rec[3]}
"""

_REDEEM_CODE = (
    _REVOKE_FAMILY_FN
    + """
-- KEYS: code, session record, family, families set, refresh pointer, family jtis.
-- ARGV: issued marker, ttl kept after use, now, fid, sid, client_id, scope, refresh hash,
--       family max expiry, user, jti, access token max expiry
-- Marks the code used and starts its refresh family in one step, so a replay
-- always finds the family it has to revoke. The same marker again is a client
-- library retrying this very redemption: it gets the same answer.
local now = tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local issued = redis.call('HGET', KEYS[1], 'issued')
if issued and issued ~= ARGV[1] then return {'used', issued} end
local rec = redis.call('HMGET', KEYS[2], 'expires_at', 'created_at')
if issued then
  local exp = redis.call('HGET', KEYS[3], 'expires_at')
  if not exp or not rec[1] then return {'ended'} end
  return {'ok', rec[1], rec[2], exp}
end
redis.call('HSET', KEYS[1], 'issued', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if not rec[1] or tonumber(rec[1]) <= now then return {'ended'} end
local exp = math.min(tonumber(ARGV[9]), tonumber(rec[1]))
redis.call('HSET', KEYS[3], 'sid', ARGV[5], 'client_id', ARGV[6], 'scope', ARGV[7], 'current', ARGV[8],
  'expires_at', exp, 'created_at', now)
redis.call('EXPIRE', KEYS[3], exp - now)
redis.call('SADD', KEYS[4], ARGV[4])
redis.call('EXPIRE', KEYS[4], tonumber(rec[1]) - now)
redis.call('SET', KEYS[5], ARGV[10] .. ' ' .. ARGV[4], 'EX', exp - now)
remember_jti(KEYS[6], ARGV[11], math.min(tonumber(ARGV[12]), tonumber(rec[1])), now)
return {'ok', rec[1], rec[2], tostring(exp)}
"""
)

_ROTATE_REFRESH = (
    _REVOKE_FAMILY_FN
    + """
-- KEYS: pointer of the presented token.
-- ARGV: prefix, now, presented hash, successor hash, grace, client_id, requested scope ('' = same),
--       jti of the access token about to be minted, its max expiry
local pointer = redis.call('GET', KEYS[1])
if not pointer then return {'invalid'} end
local sep = string.find(pointer, ' ', 1, true)
local user, fid = string.sub(pointer, 1, sep - 1), string.sub(pointer, sep + 1)
local base = ARGV[1] .. '{' .. user .. '}:'
local fam = base .. 'family:' .. fid
local now = tonumber(ARGV[2])
local f = redis.call('HMGET', fam, 'sid', 'client_id', 'scope', 'current', 'prev', 'rotated_at', 'expires_at')
if not f[1] then return {'invalid'} end
if f[2] ~= ARGV[6] then return {'invalid'} end
local granted = {}
for s in string.gmatch(f[3], '%S+') do granted[s] = true end
for s in string.gmatch(ARGV[7], '%S+') do
  if not granted[s] then return {'scope'} end
end
local sess = redis.call('HMGET', base .. 'session:' .. f[1], 'expires_at', 'created_at', 'last_active_at', 'claims')
local jti_prefix, jtis = ARGV[1] .. 'jti:', base .. 'jtis:' .. fid
if not sess[1] or tonumber(sess[1]) <= now or tonumber(f[7]) <= now then
  revoke_family(base, fam, jti_prefix, now)
  return {'invalid'}
end
local result = {'', user, f[1], f[3], sess[1], sess[2], sess[3], sess[4] or '', f[7]}
local jti_exp = math.min(tonumber(ARGV[9]), tonumber(sess[1]))
if f[4] == ARGV[3] then
  local ttl = tonumber(f[7]) - now
  redis.call('HSET', fam, 'prev', ARGV[3], 'current', ARGV[4], 'rotated_at', now)
  redis.call('SET', ARGV[1] .. 'rt:' .. ARGV[4], pointer, 'EX', ttl)
  remember_jti(jtis, ARGV[8], jti_exp, now)
  result[1] = 'ok'
  return result
end
if f[5] == ARGV[3] and f[4] == ARGV[4] then
  -- the same request retried by the Redis client (same jti): the same answer
  if redis.call('ZSCORE', jtis, ARGV[8]) then
    result[1] = 'ok'
    return result
  end
  if tonumber(ARGV[5]) > 0 and now - tonumber(f[6]) <= tonumber(ARGV[5]) then
    remember_jti(jtis, ARGV[8], jti_exp, now)
    result[1] = 'grace'
    return result
  end
end
revoke_family(base, fam, jti_prefix, now)
return {'reuse', user, f[1]}
"""
)

_REVOKE_REFRESH = (
    _REVOKE_FAMILY_FN
    + """
-- KEYS: pointer. ARGV: prefix, client_id ('' = any: service authentication), now.
local pointer = redis.call('GET', KEYS[1])
if not pointer then return 0 end
local sep = string.find(pointer, ' ', 1, true)
local user, fid = string.sub(pointer, 1, sep - 1), string.sub(pointer, sep + 1)
local base = ARGV[1] .. '{' .. user .. '}:'
local fam = base .. 'family:' .. fid
local owner = redis.call('HGET', fam, 'client_id')
if not owner then return 0 end
if ARGV[2] ~= '' and owner ~= ARGV[2] then return -1 end
return revoke_family(base, fam, ARGV[1] .. 'jti:', tonumber(ARGV[3]))
"""
)

_REVOKE_FAMILY = (
    _REVOKE_FAMILY_FN
    + """
-- KEYS: family. ARGV: base, jti key prefix, now.
return revoke_family(ARGV[1], KEYS[1], ARGV[2], tonumber(ARGV[3]))
"""
)

_INSPECT_REFRESH = """
-- KEYS: pointer. ARGV: prefix, presented hash, now. The family of a current refresh token.
local pointer = redis.call('GET', KEYS[1])
if not pointer then return false end
local sep = string.find(pointer, ' ', 1, true)
local user, fid = string.sub(pointer, 1, sep - 1), string.sub(pointer, sep + 1)
local base = ARGV[1] .. '{' .. user .. '}:'
local f = redis.call('HMGET', base .. 'family:' .. fid, 'sid', 'client_id', 'scope', 'current', 'expires_at',
  'created_at', 'rotated_at')
if not f[1] or f[4] ~= ARGV[2] or tonumber(f[5]) <= tonumber(ARGV[3]) then return false end
local exp = redis.call('HGET', base .. 'session:' .. f[1], 'expires_at')
if not exp or tonumber(exp) <= tonumber(ARGV[3]) then return false end
return {user, f[1], f[2], f[3], f[5], f[7] or f[6], fid}
"""


_COUNT_FAILURE = """
-- KEYS: the window's counter. ARGV: ttl. One more failure; the count so far.
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


@dataclass(frozen=True)
class Rotation:
    """What the rotation script decided for a presented refresh token."""

    outcome: str  # ok | grace | reuse | invalid | scope
    user_id: str = ""
    sid: str = ""
    scope: str = ""
    session_expires_at: int = 0
    auth_time: int = 0
    last_active_at: int = 0
    claims: str = ""
    family_expires_at: int = 0


@dataclass(frozen=True)
class CodeIssue:
    """What _ISSUE_CODE decided: ok (stored), stale (a fresh login is needed) or none (no live session)."""

    outcome: str
    user_id: str = ""
    last_active_at: int = 0


@dataclass(frozen=True)
class FamilyStart:
    session_expires_at: int
    auth_time: int
    family_expires_at: int


@dataclass(frozen=True)
class RefreshInfo:
    user_id: str
    sid: str
    client_id: str
    scope: str
    expires_at: int
    issued_at: int
    family_id: str


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisStore:
    """Session, code and token state in Redis; takes a ready client."""

    def __init__(self, client: redis.Redis, prefix: str = "sso:") -> None:
        self.redis = client
        self.prefix = prefix
        self._create_session = client.register_script(_CREATE_SESSION)
        self._find_session = client.register_script(_FIND_SESSION)
        self._list_sessions = client.register_script(_LIST_SESSIONS)
        self._invalidate = client.register_script(_INVALIDATE)
        self._touch = client.register_script(_TOUCH)
        self._issue_code = client.register_script(_ISSUE_CODE)
        self._redeem_code = client.register_script(_REDEEM_CODE)
        self._rotate = client.register_script(_ROTATE_REFRESH)
        self._revoke_refresh = client.register_script(_REVOKE_REFRESH)
        self._revoke_family = client.register_script(_REVOKE_FAMILY)
        self._inspect_refresh = client.register_script(_INSPECT_REFRESH)
        self._count_failure = client.register_script(_COUNT_FAILURE)
        self._access_token_state = client.register_script(_ACCESS_STATE)

    # -- key builders -------------------------------------------------------

    def user_base(self, user_id: str) -> str:
        return f"{self.prefix}{{{user_id}}}:"

    def session_key(self, user_id: str, sid: str) -> str:
        return f"{self.user_base(user_id)}session:{sid}"

    def index_key(self, user_id: str) -> str:
        return f"{self.user_base(user_id)}sessions"

    def families_key(self, user_id: str, sid: str) -> str:
        return f"{self.user_base(user_id)}families:{sid}"

    def family_key(self, user_id: str, fid: str) -> str:
        return f"{self.user_base(user_id)}family:{fid}"

    def family_jtis_key(self, user_id: str, fid: str) -> str:
        return f"{self.user_base(user_id)}jtis:{fid}"

    def pointer_key(self, sid: str) -> str:
        return f"{self.prefix}sid:{sid}"

    def refresh_key(self, refresh_hash: str) -> str:
        return f"{self.prefix}rt:{refresh_hash}"

    def code_key(self, code_hash: str) -> str:
        return f"{self.prefix}code:{code_hash}"

    def revoked_jti_key(self, jti: str) -> str:
        return f"{self.prefix}jti:{jti}"

    def rate_key(self, limit: str, window: int, address: str) -> str:
        return f"{self.prefix}rl:{limit}:{window}:{address}"

    @property
    def events_channel(self) -> str:
        return f"{self.prefix}events"

    # -- sessions -----------------------------------------------------------

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def create_session(self, sid: str, user_id: str, now: int, expires_at: int, fields: dict[str, str]) -> None:
        """Write the record, the sid pointer and the listing index in one script."""
        self._create_session(
            keys=[self.session_key(user_id, sid), self.index_key(user_id), self.pointer_key(sid)],
            args=[
                sid,
                user_id,
                now,
                expires_at,
                max(1, expires_at - now),
                fields["client_ip"],
                fields["user_agent"],
                fields["platform"],
                fields["claims"],
            ],
        )

    def find_session(self, sid: str) -> dict[str, str] | None:
        """One round trip from a session id hash to its record.

        The script answers with the values alone (HMGET, in SESSION_FIELDS order),
        not HGETALL's name/value pairs: half the reply for redis-py to parse.
        """
        values = self._find_session(keys=[self.pointer_key(sid)], args=[self.prefix, sid])
        if not values:
            return None
        return {name: value for name, value in zip(SESSION_FIELDS, values, strict=True) if value is not None}

    def list_sessions(self, user_id: str, now: int) -> list[tuple[str, dict[str, str]]]:
        flat = self._list_sessions(keys=[self.index_key(user_id)], args=[self.user_base(user_id), now])
        return [(flat[i], _pairs(flat[i + 1])) for i in range(0, len(flat), 2)]

    def invalidate(self, user_id: str, sids: Iterable[str]) -> list[str]:
        """End the listed sessions of one user, their refresh families included."""
        return list(self._invalidate(keys=[self.index_key(user_id)], args=[self.prefix, user_id, "some", *sids]))

    def invalidate_all(self, user_id: str, keep: Iterable[str]) -> list[str]:
        return list(self._invalidate(keys=[self.index_key(user_id)], args=[self.prefix, user_id, "all", *keep]))

    def touch_many(self, marks: Iterable[tuple[str, str, int]], interval: int) -> int:
        """Pipelined activity writes; returns how many records were updated."""
        pipe = self.redis.pipeline(transaction=False)
        for user_id, sid, at in marks:
            self._touch(keys=[self.session_key(user_id, sid)], args=[at, interval], client=pipe)
        return sum(int(n) for n in pipe.execute())

    def publish_many(self, messages: Sequence[str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for message in messages:
            pipe.publish(self.events_channel, message)
        pipe.execute()

    # -- authorization codes ------------------------------------------------

    def issue_code(
        self,
        code_hash: str,
        *,
        sid: str,
        binding: dict[str, Any],
        clock: float,
        fresh_login: bool,
        max_age: int | None,
        auth_after: int | None,
        ttl: int,
    ) -> CodeIssue:
        """Check the session and store a code bound to it, in one script (one round trip).

        The code is stored only when the session is alive at ``clock`` and no fresh
        login is needed: not ``fresh_login`` (prompt=login), not created more than
        ``max_age`` seconds ago, not before ``auth_after``. The stored binding gains
        the session's ``user_id`` and ``auth_time``.
        """
        r = self._issue_code(
            keys=[self.pointer_key(sid), self.code_key(code_hash)],
            args=[
                self.prefix,
                sid,
                clock,
                "1" if fresh_login else "0",
                "" if max_age is None else max_age,
                "" if auth_after is None else auth_after,
                json.dumps(binding, separators=(",", ":")),
                ttl,
            ],
        )
        if r[0] == "ok":
            return CodeIssue("ok", user_id=r[1], last_active_at=int(r[2] or 0))
        return CodeIssue(r[0])

    def read_code(self, code_hash: str) -> dict[str, Any] | None:
        """What a code is bound to, without using it up."""
        data = self.redis.hget(self.code_key(code_hash), "data")
        return json.loads(data) if data else None

    def burn_code(self, code_hash: str, keep: int) -> None:
        """Use a code up without issuing anything (its bindings did not match)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(self.code_key(code_hash), "issued", '{"burned":true}')
        pipe.expire(self.code_key(code_hash), keep)
        pipe.execute()

    def redeem_code(
        self,
        code_hash: str,
        *,
        user_id: str,
        sid: str,
        fid: str,
        client_id: str,
        scope: str,
        refresh_hash: str,
        now: int,
        expires_at: int,
        jti: str,
        access_expires_at: int,
        keep: int,
    ) -> tuple[str, FamilyStart | None, dict[str, Any]]:
        """Mark the code used and start its refresh family in one script.

        ('ok', family, {}) | ('missing', None, {}) | ('ended', None, {}) |
        ('used', None, what the first redemption issued).
        """
        marker = json.dumps({"fid": fid, "jti": jti}, separators=(",", ":"))
        r = self._redeem_code(
            keys=[
                self.code_key(code_hash),
                self.session_key(user_id, sid),
                self.family_key(user_id, fid),
                self.families_key(user_id, sid),
                self.refresh_key(refresh_hash),
                self.family_jtis_key(user_id, fid),
            ],
            args=[marker, keep, now, fid, sid, client_id, scope, refresh_hash, expires_at, user_id, jti,
                  access_expires_at],
        )  # fmt: skip
        if r[0] == "used":
            return "used", None, json.loads(r[1])
        if r[0] != "ok":
            return r[0], None, {}
        return "ok", FamilyStart(int(r[1]), int(r[2]), int(r[3])), {}

    def rotate_refresh(
        self,
        *,
        presented: str,
        successor: str,
        now: int,
        grace: int,
        client_id: str,
        scope: str,
        jti: str,
        access_expires_at: int,
    ) -> Rotation:
        """One atomic script: rotate, replay within grace, or revoke the family on reuse."""
        r = self._rotate(
            keys=[self.refresh_key(presented)],
            args=[self.prefix, now, presented, successor, grace, client_id, scope, jti, access_expires_at],
        )
        if r[0] in ("ok", "grace"):
            return Rotation(
                outcome=r[0],
                user_id=r[1],
                sid=r[2],
                scope=r[3],
                session_expires_at=int(r[4]),
                auth_time=int(r[5]),
                last_active_at=int(r[6] or 0),
                claims=r[7],
                family_expires_at=int(r[8]),
            )
        if r[0] == "reuse":
            return Rotation(outcome="reuse", user_id=r[1], sid=r[2])
        return Rotation(outcome=r[0])

    def revoke_refresh(self, refresh_hash: str, client_id: str | None, now: int) -> int:
        """1 revoked, 0 unknown, -1 owned by another client (left alive)."""
        return int(
            self._revoke_refresh(keys=[self.refresh_key(refresh_hash)], args=[self.prefix, client_id or "", now])
        )

    def revoke_family(self, user_id: str, fid: str, now: int) -> None:
        self._revoke_family(
            keys=[self.family_key(user_id, fid)], args=[self.user_base(user_id), f"{self.prefix}jti:", now]
        )

    def inspect_refresh(self, refresh_hash: str, now: int) -> RefreshInfo | None:
        r = self._inspect_refresh(keys=[self.refresh_key(refresh_hash)], args=[self.prefix, refresh_hash, now])
        if not r:
            return None
        return RefreshInfo(
            user_id=r[0],
            sid=r[1],
            client_id=r[2],
            scope=r[3],
            expires_at=int(r[4]),
            issued_at=int(r[5]),
            family_id=r[6],
        )

    # -- access tokens ------------------------------------------------------

    def revoke_jti(self, jti: str, ttl: int) -> None:
        if ttl > 0:
            self.redis.set(self.revoked_jti_key(jti), "1", ex=ttl)

    def access_token_state(self, jti: str, user_id: str, sid: str) -> tuple[bool, dict[str, str] | None]:
        """(revoked, the session's ``expires_at`` and ``claims`` or None) in one script call.

        One EVALSHA with a three-element reply: a pipelined EXISTS + HGETALL cost
        redis-py about twice the CPU (docs/benchmarks.md, introspection).
        """
        revoked, expires_at, claims = self._access_token_state(
            keys=[self.revoked_jti_key(jti), self.session_key(user_id, sid)]
        )
        session = {"expires_at": expires_at, "claims": claims or ""} if expires_at else None
        return bool(revoked), session

    # -- rate limits ------------------------------------------------------------

    def count_failure(self, limit: str, window: int, address: str, ttl: int) -> int:
        """Add one failure to a fixed window's counter (created with its TTL); the new count."""
        return int(self._count_failure(keys=[self.rate_key(limit, window, address)], args=[max(1, ttl)]))

    # -- metrics ------------------------------------------------------------------

    def count_live_sessions(self, max_round_trips: int = 1000, batch: int = 1000) -> tuple[int, bool]:
        """Live sessions, counted by their ``sid:`` pointers with SCAN; ``(count, complete)``.

        At most ``max_round_trips`` SCAN calls of ``batch`` keys each (about a million keys
        looked at): past that the count is a lower bound and ``complete`` is False.
        """
        cursor, count = 0, 0
        for _ in range(max_round_trips):
            cursor, keys = self.redis.scan(cursor, match=f"{self.prefix}sid:*", count=batch)
            count += len(keys)
            if int(cursor) == 0:
                return count, True
        return count, False
