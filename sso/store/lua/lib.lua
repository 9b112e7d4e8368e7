-- Shared by the scripts that read refresh families; prepended to them when they are loaded.
-- A family is the field 'f:<fid>' of its session record, JSON: c client_id, s scope, g generation,
-- k MAC key (hex), e expiry, t created, r last rotation, n access tokens minted (jti '<fid>.<i>'),
-- x latest exp of those tokens, q/qn the request id and token index of the last rotation.

local function hex2bin(hex)
  return (string.gsub(hex, '..', function(pair) return string.char(tonumber(pair, 16)) end))
end

-- HMAC-SHA1 (RFC 2104) under a key of at most 64 bytes, hex. Lua strings are interned, so
-- comparing two of them with == is a pointer comparison: constant time.
local function hmac_sha1(key, msg)
  local inner, outer = {}, {}
  for i = 1, 64 do
    local b = string.byte(key, i) or 0
    inner[i] = string.char(bit.bxor(b, 0x36))
    outer[i] = string.char(bit.bxor(b, 0x5c))
  end
  return redis.sha1hex(table.concat(outer) .. hex2bin(redis.sha1hex(table.concat(inner) .. msg)))
end

local function refresh_mac(fam, sid, fid, gen)
  return hmac_sha1(hex2bin(fam.k), sid .. '.' .. fid .. '.' .. string.format('%d', gen))
end

-- End a family: its refresh tokens stop working at once, and its access tokens that have not
-- expired yet are marked revoked in the record ('x:<fid>' = their latest exp).
local function end_family(rec, fid, fam, now)
  redis.call('HDEL', rec, 'f:' .. fid)
  if fam.x > now then redis.call('HSET', rec, 'x:' .. fid, fam.x) end
end

-- The record's live families ({fid = family}) and live single-token marks (count); expired
-- families and marks are dropped on the way, so the record stays bounded.
local function live_state(rec, now)
  local fields = redis.call('HGETALL', rec)
  local live, marks, dead = {}, 0, {}
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    local kind = string.sub(name, 1, 2)
    if kind == 'f:' then
      local fam = cjson.decode(value)
      if fam.e <= now then table.insert(dead, name) else live[string.sub(name, 3)] = fam end
    elseif kind == 'x:' or kind == 'j:' then
      if tonumber(value) <= now then
        table.insert(dead, name)
      elseif kind == 'j:' then
        marks = marks + 1
      end
    end
  end
  if #dead > 0 then redis.call('HDEL', rec, unpack(dead)) end
  return live, marks
end
