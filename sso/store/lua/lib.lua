-- Shared by the scripts that read refresh families; prepended to them when they are loaded.
-- A family is the field 'f:<fid>' of its session record: g generation, n access tokens minted
-- (jti '<fid>.<i>'), qn/q the token index and request id of the last rotation, r last rotation,
-- x latest exp of its access tokens (never past e: no access token outlives its family), e expiry,
-- t created, k MAC key (hex), c client_id, s scope, and h its checkpoints (below), written after q
-- as '/x:n' each. The record's field 'y' revokes the access
-- tokens of every family the session has ended ('raise_ended'); 'j:<jti>' revokes one token.
-- Numbers are written at a fixed width, so the record's size never changes as a family rotates.
--
-- Checkpoints say which of a family's access tokens may still be alive, so that the tokens-revoked
-- event of an ended family can name each of them. A checkpoint {x, n} means "every token below
-- index n expires by x"; after each mint the family's own {x, n} is recorded, replacing the newest
-- checkpoint while x stays in the same quarter-lifetime span (x // w, w = ceil(access token TTL/4)),
-- else pushed out the oldest. CHECKPOINTS spans of distinct width-w steps reach back further than a
-- lifetime, so at any instant some checkpoint has passed, and every token below the latest passed
-- one has expired: the tokens still alive are among the rest, and at most those of half a
-- lifetime more are named with them. What a family stores stays the same size.
-- The previous version wrote no checkpoints (its q is the request id alone) and drops them when it
-- rotates (during a rolling deploy): such a family reads as CHECKPOINTS copies of its own {x, n}.
local CHECKPOINTS = 6

local function decode_family(text)
  local g, n, qn, r, x, e, t, k, q, c, s = string.match(text,
    '^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%x+) (%S+) (%S+) ?(.*)$')
  local f = {g = tonumber(g), n = tonumber(n), qn = tonumber(qn), r = tonumber(r), x = tonumber(x),
    e = tonumber(e), t = tonumber(t), k = k, c = c, s = s, h = {}}
  local checkpoints
  f.q, checkpoints = string.match(q, '^([^/]*)(.*)$')
  for cx, cn in string.gmatch(checkpoints, '/(%d+):(%d+)') do
    table.insert(f.h, {tonumber(cx), tonumber(cn)})
  end
  if #f.h ~= CHECKPOINTS then
    f.h = {}
    for i = 1, CHECKPOINTS do f.h[i] = {f.x, f.n} end
  end
  return f
end

local function encode_family(f)
  local h = {}
  for i, c in ipairs(f.h) do h[i] = string.format('/%010d:%010d', c[1], c[2]) end
  return string.format('%010d %010d %010d %010d %010d %010d %010d %s %s%s %s %s',
    f.g, f.n, f.qn, f.r, f.x, f.e, f.t, f.k, f.q, table.concat(h), f.c, f.s)
end

-- The checkpoints of a family that has minted one token (index 0) expiring at x.
local function first_checkpoints(x)
  local h = {}
  for i = 1, CHECKPOINTS - 1 do h[i] = {0, 0} end
  h[CHECKPOINTS] = {x, 1}
  return h
end

-- After a mint: record the family's {x, n} (ttl: the access token lifetime it was minted with).
local function checkpoint(f, ttl)
  local w = math.max(1, math.ceil(ttl / 4))
  local newest = f.h[CHECKPOINTS]
  if math.floor(f.x / w) ~= math.floor(newest[1] / w) then
    table.remove(f.h, 1)
    table.insert(f.h, {f.x, f.n})
  else
    f.h[CHECKPOINTS] = {f.x, f.n}
  end
end

-- The index from which the family's access tokens may still be alive at ``now``: that of the latest
-- checkpoint passed, or nil when none has (a record of the previous version, or a longer lifetime
-- configured since its tokens were minted).
local function alive_from(f, now)
  local from
  for _, c in ipairs(f.h) do
    if c[1] <= now then from = c[2] end
  end
  if f.x <= now then from = f.n end
  return from
end

local function hex2bin(hex)
  local bytes = {}
  for i = 1, #hex, 2 do bytes[#bytes + 1] = tonumber(string.sub(hex, i, i + 1), 16) end
  return string.char(unpack(bytes))
end

-- HMAC-SHA1 (RFC 2104) under a key of at most 64 bytes, hex. Lua strings are interned, so
-- comparing two of them with == is a pointer comparison: constant time. Only the key's own bytes
-- are XORed (byte by byte is the slow part of this in Lua); the zero padding after them XORs to
-- runs of 0x36 ('6') and 0x5c ('\\').
local function hmac_sha1(key, msg)
  if #key > 64 then error('hmac_sha1: keys longer than 64 bytes are not supported') end
  local inner, outer = {}, {}
  for i = 1, #key do
    local b = string.byte(key, i)
    inner[i] = bit.bxor(b, 0x36)
    outer[i] = bit.bxor(b, 0x5c)
  end
  local pad = 64 - #key
  local ipad = string.char(unpack(inner)) .. string.rep('6', pad)
  local opad = string.char(unpack(outer)) .. string.rep('\\', pad)
  return redis.sha1hex(opad .. hex2bin(redis.sha1hex(ipad .. msg)))
end

local function refresh_mac(fam, sid, fid, gen)
  return hmac_sha1(hex2bin(fam.k), sid .. '.' .. fid .. '.' .. string.format('%d', gen))
end

-- Raise the session's mark 'y' (the latest exp of the access tokens of every family it has ended)
-- to ``x``; it is only ever raised, never lowered, so ending a family with early tokens never
-- shortens the revocation of another. An access token whose family field is absent is revoked
-- while 'y' is in the future (sso/store/token_state.py): family ids are unique, and a family is
-- absent only once ended or expired, and no access token outlives its family (the clamp).
local function raise_ended(rec, x, current)
  if current == nil then current = tonumber(redis.call('HGET', rec, 'y') or '0') end
  if x > current then redis.call('HSET', rec, 'y', string.format('%d', x)) end
end

-- End a family: its refresh tokens stop working at once, and its access tokens that have not
-- expired yet are revoked by raising 'y' to their latest exp.
-- Returns {latest exp, tokens minted, index from which they may be alive (-1: unknown)} as strings,
-- for the tokens-revoked event.
local function end_family(rec, fid, fam, now)
  redis.call('HDEL', rec, 'f:' .. fid)
  if fam.x > now then raise_ended(rec, fam.x) end
  return {string.format('%d', fam.x), string.format('%d', fam.n), string.format('%d', alive_from(fam, now) or -1)}
end

-- The record's live families ({fid = {e = expiry, t = created, text = the field}}; decode_family
-- the one you need: decoding all of up to 32 doubled this function's time) and live single-token
-- marks (a count); expired
-- families and marks are dropped on the way. 'x:<fid>' fields are per-family marks written before
-- 'y' existed: a live one is folded into 'y' (exact: its family is absent), every one is dropped.
local function live_state(rec, now)
  local fields = redis.call('HGETALL', rec)
  local live, marks, dead, y, legacy = {}, 0, {}, 0, 0
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    local kind = string.sub(name, 1, 2)
    if kind == 'f:' then
      local e, t = string.match(value, '^%d+ %d+ %d+ %d+ %d+ (%d+) (%d+) ')
      e = tonumber(e)
      if e <= now then table.insert(dead, name) else live[string.sub(name, 3)] = {e = e, t = tonumber(t), text = value} end
    elseif kind == 'j:' then
      if tonumber(value) <= now then table.insert(dead, name) else marks = marks + 1 end
    elseif kind == 'x:' then
      table.insert(dead, name)
      legacy = math.max(legacy, tonumber(value))
    elseif name == 'y' then
      y = tonumber(value)
    end
  end
  if legacy > now then raise_ended(rec, legacy, y) end
  if #dead > 0 then redis.call('HDEL', rec, unpack(dead)) end
  return live, marks
end
