"""The only module that speaks Redis: key builders, TTLs and Lua scripts.

Key layout (``P`` is ``SSO_REDIS_PREFIX``)::

    P{<user>}:session:<sid>     hash   one session record            TTL = session expiry
    P{<user>}:sessions          zset   sid -> expires_at (listing)   TTL = latest expiry
    P{<user>}:families:<sid>    set    refresh families of a session TTL = session expiry
    P{<user>}:family:<fid>      hash   one refresh rotation family   TTL = family expiry
    P{<user>}:jtis:<fid>        set    access token ids of a family  TTL = access token TTL
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
# access tokens minted from it (RFC 7009 §2.1) until they expire.
_REVOKE_FAMILY_FN = """
local function revoke_family(base, fam, jti_prefix, ttl)
  local fid = string.sub(fam, #base + 8)
  local sid = redis.call('HGET', fam, 'sid')
  if sid then redis.call('SREM', base .. 'families:' .. sid, fid) end
  local jtis = base .. 'jtis:' .. fid
  for _, jti in ipairs(redis.call('SMEMBERS', jtis)) do
    redis.call('SET', jti_prefix .. jti, '1', 'EX', ttl)
  end
  redis.call('DEL', jtis)
  return redis.call('DEL', fam)
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

_FIND_SESSION = """
-- KEYS: pointer. ARGV: prefix, sid. Returns the record's fields or false.
local user = redis.call('GET', KEYS[1])
if not user then return false end
local rec = redis.call('HGETALL', ARGV[1] .. '{' .. user .. '}:session:' .. ARGV[2])
if #rec == 0 then return false end
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

_CONSUME_CODE = """
-- KEYS: code. ARGV: issued marker (unique per request), ttl kept after use (to detect replays).
local data = redis.call('HGET', KEYS[1], 'data')
if not data then return false end
local issued = redis.call('HGET', KEYS[1], 'issued')
-- The same request run twice (the client retried after a timeout that Redis outlived): the same answer.
if issued == ARGV[1] then return {'fresh', data} end
if issued then return {'used', data, issued} end
redis.call('HSET', KEYS[1], 'issued', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {'fresh', data}
"""

_CREATE_FAMILY = """
-- KEYS: session record, family, families set, refresh pointer, family's access token ids.
-- ARGV: now, fid, sid, client_id, scope, refresh hash, family max expiry, user, jti, access ttl
local now = tonumber(ARGV[1])
local rec = redis.call('HMGET', KEYS[1], 'expires_at', 'created_at', 'last_active_at', 'claims')
if not rec[1] or tonumber(rec[1]) <= now then return false end
local exp = math.min(tonumber(ARGV[7]), tonumber(rec[1]))
redis.call('HSET', KEYS[2], 'sid', ARGV[3], 'client_id', ARGV[4], 'scope', ARGV[5], 'current', ARGV[6],
  'expires_at', exp, 'created_at', now)
redis.call('EXPIRE', KEYS[2], exp - now)
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], tonumber(rec[1]) - now)
redis.call('SET', KEYS[4], ARGV[8] .. ' ' .. ARGV[2], 'EX', exp - now)
redis.call('SADD', KEYS[5], ARGV[9])
redis.call('EXPIRE', KEYS[5], ARGV[10])
return {rec[1], rec[2], rec[3], rec[4], tostring(exp)}
"""

_ROTATE_REFRESH = (
    _REVOKE_FAMILY_FN
    + """
-- KEYS: pointer of the presented token.
-- ARGV: prefix, now, presented hash, successor hash, grace, client_id, requested scope ('' = same),
--       jti of the access token about to be minted (unique per request: the idempotency key), access token ttl
local pointer = redis.call('GET', KEYS[1])
if not pointer then return {'invalid'} end
local sep = string.find(pointer, ' ', 1, true)
local user, fid = string.sub(pointer, 1, sep - 1), string.sub(pointer, sep + 1)
local base = ARGV[1] .. '{' .. user .. '}:'
local fam = base .. 'family:' .. fid
local now = tonumber(ARGV[2])
local f = redis.call('HMGET', fam, 'sid', 'client_id', 'scope', 'current', 'prev', 'rotated_at', 'expires_at',
  'rotated_by')
if not f[1] then return {'invalid'} end
if f[2] ~= ARGV[6] then return {'invalid'} end
local granted = {}
for s in string.gmatch(f[3], '%S+') do granted[s] = true end
for s in string.gmatch(ARGV[7], '%S+') do
  if not granted[s] then return {'scope'} end
end
local sess = redis.call('HMGET', base .. 'session:' .. f[1], 'expires_at', 'created_at', 'last_active_at', 'claims')
local jti_prefix, access_ttl = ARGV[1] .. 'jti:', ARGV[9]
if not sess[1] or tonumber(sess[1]) <= now or tonumber(f[7]) <= now then
  revoke_family(base, fam, jti_prefix, access_ttl)
  return {'invalid'}
end
local result = {'', user, f[1], f[3], sess[1], sess[2], sess[3], sess[4] or '', f[7]}
local function remember_jti()
  redis.call('SADD', base .. 'jtis:' .. fid, ARGV[8])
  redis.call('EXPIRE', base .. 'jtis:' .. fid, access_ttl)
end
if f[4] == ARGV[3] then
  local ttl = tonumber(f[7]) - now
  redis.call('HSET', fam, 'prev', ARGV[3], 'current', ARGV[4], 'rotated_at', now, 'rotated_by', ARGV[8])
  redis.call('SET', ARGV[1] .. 'rt:' .. ARGV[4], pointer, 'EX', ttl)
  remember_jti()
  result[1] = 'ok'
  return result
end
-- The same request run twice (the client retried after a timeout that Redis outlived; the jti is
-- unique per request): the same answer, not reuse.
if f[5] == ARGV[3] and f[4] == ARGV[4] and f[8] == ARGV[8] then
  result[1] = 'ok'
  return result
end
if tonumber(ARGV[5]) > 0 and f[5] == ARGV[3] and f[4] == ARGV[4] and now - tonumber(f[6]) <= tonumber(ARGV[5]) then
  remember_jti()
  result[1] = 'grace'
  return result
end
revoke_family(base, fam, jti_prefix, access_ttl)
return {'reuse', user, f[1]}
"""
)

_REVOKE_REFRESH = (
    _REVOKE_FAMILY_FN
    + """
-- KEYS: pointer. ARGV: prefix, client_id ('' = any: service authentication), access token ttl.
local pointer = redis.call('GET', KEYS[1])
if not pointer then return 0 end
local sep = string.find(pointer, ' ', 1, true)
local user, fid = string.sub(pointer, 1, sep - 1), string.sub(pointer, sep + 1)
local base = ARGV[1] .. '{' .. user .. '}:'
local fam = base .. 'family:' .. fid
local owner = redis.call('HGET', fam, 'client_id')
if not owner then return 0 end
if ARGV[2] ~= '' and owner ~= ARGV[2] then return -1 end
return revoke_family(base, fam, ARGV[1] .. 'jti:', ARGV[3])
"""
)

_REVOKE_FAMILY = (
    _REVOKE_FAMILY_FN
    + """
-- KEYS: family. ARGV: base, jti key prefix, access token ttl.
return revoke_family(ARGV[1], KEYS[1], ARGV[2], ARGV[3])
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
class FamilyStart:
    session_expires_at: int
    auth_time: int
    last_active_at: int
    claims: str
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

    def __init__(self, client: redis.Redis, prefix: str = "sso:", *, access_token_ttl: int = 900) -> None:
        self.redis = client
        self.prefix = prefix
        self.access_token_ttl = access_token_ttl  # how long a denied jti must stay denied
        self._create_session = client.register_script(_CREATE_SESSION)
        self._find_session = client.register_script(_FIND_SESSION)
        self._list_sessions = client.register_script(_LIST_SESSIONS)
        self._invalidate = client.register_script(_INVALIDATE)
        self._touch = client.register_script(_TOUCH)
        self._consume_code = client.register_script(_CONSUME_CODE)
        self._create_family = client.register_script(_CREATE_FAMILY)
        self._rotate = client.register_script(_ROTATE_REFRESH)
        self._revoke_refresh = client.register_script(_REVOKE_REFRESH)
        self._revoke_family = client.register_script(_REVOKE_FAMILY)
        self._inspect_refresh = client.register_script(_INSPECT_REFRESH)
        self._count_failure = client.register_script(_COUNT_FAILURE)

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
        """One round trip from a session id hash to its record."""
        flat = self._find_session(keys=[self.pointer_key(sid)], args=[self.prefix, sid])
        return _pairs(flat) if flat else None

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

    def save_code(self, code_hash: str, data: dict[str, Any], ttl: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.code_key(code_hash), "data", json.dumps(data, separators=(",", ":")))
        pipe.expire(self.code_key(code_hash), ttl)
        pipe.execute()

    def consume_code(
        self, code_hash: str, issued: dict[str, Any], keep: int
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """Atomically mark a code used; ('missing'|'fresh'|'used', data, what was issued)."""
        marker = json.dumps(issued, separators=(",", ":"))
        result = self._consume_code(keys=[self.code_key(code_hash)], args=[marker, keep])
        if not result:
            return "missing", {}, {}
        data = json.loads(result[1])
        return result[0], data, json.loads(result[2]) if result[0] == "used" else {}

    # -- refresh token families --------------------------------------------

    def create_family(
        self,
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
    ) -> FamilyStart | None:
        """Start a rotation family if the session is alive; None when it is not."""
        result = self._create_family(
            keys=[
                self.session_key(user_id, sid),
                self.family_key(user_id, fid),
                self.families_key(user_id, sid),
                self.refresh_key(refresh_hash),
                self.family_jtis_key(user_id, fid),
            ],
            args=[now, fid, sid, client_id, scope, refresh_hash, expires_at, user_id, jti, self.access_token_ttl],
        )
        if not result:
            return None
        return FamilyStart(
            session_expires_at=int(result[0]),
            auth_time=int(result[1]),
            last_active_at=int(result[2] or 0),
            claims=result[3] or "",
            family_expires_at=int(result[4]),
        )

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
    ) -> Rotation:
        """One atomic script: rotate, replay within grace, or revoke the family on reuse."""
        r = self._rotate(
            keys=[self.refresh_key(presented)],
            args=[self.prefix, now, presented, successor, grace, client_id, scope, jti, self.access_token_ttl],
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

    def revoke_refresh(self, refresh_hash: str, client_id: str | None) -> int:
        """1 revoked, 0 unknown, -1 owned by another client (left alive)."""
        return int(
            self._revoke_refresh(
                keys=[self.refresh_key(refresh_hash)], args=[self.prefix, client_id or "", self.access_token_ttl]
            )
        )

    def revoke_family(self, user_id: str, fid: str) -> None:
        self._revoke_family(
            keys=[self.family_key(user_id, fid)],
            args=[self.user_base(user_id), f"{self.prefix}jti:", self.access_token_ttl],
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
        """(revoked, session record or None) in one pipelined round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(self.revoked_jti_key(jti))
        pipe.hgetall(self.session_key(user_id, sid))
        revoked, record = pipe.execute()
        return bool(revoked), (record or None)

    # -- rate limits ------------------------------------------------------------

    def count_failure(self, limit: str, window: int, address: str, ttl: int) -> int:
        """Add one failure to a fixed window's counter (created with its TTL); the new count."""
        return int(self._count_failure(keys=[self.rate_key(limit, window, address)], args=[max(1, ttl)]))
