-- KEYS: session record.
-- ARGV: sid, fid, generation, MAC (hex) of the presented token, now, grace, client_id,
--       requested scope ('' = as granted), request id, access token max expiry.
-- One atomic step: rotate (the current generation), answer a retry of this very request the same,
-- hand the same successor to a replay within the grace period, or end the family on reuse
-- (RFC 9700 §4.14: any earlier generation whose MAC is valid was really issued and spent, so it
-- ends the family whatever client or scope the request names; those checks are for current tokens).
-- {'ok'|'grace', user, scope, session expires_at, auth_time, last_active_at, claims, family expiry,
--  next generation, its MAC, jti} | {'reuse', user, latest exp of its access tokens, tokens minted,
--  index from which they may be alive, -1 unknown} | {'scope'} | {'invalid'}
local rec = KEYS[1]
local sid, fid, gen, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[5])
local r = redis.call('HMGET', rec, 'f:' .. fid, 'user_id', 'expires_at', 'created_at', 'last_active_at', 'claims')
if not r[1] then return {'invalid'} end
local f = decode_family(r[1])
if refresh_mac(f, sid, fid, gen) ~= ARGV[4] then return {'invalid'} end
if not r[3] or tonumber(r[3]) <= now or f.e <= now then
  redis.call('HDEL', rec, 'f:' .. fid)
  return {'invalid'}
end
local retry = gen == f.g - 1 and f.q == ARGV[9]
local grace = tonumber(ARGV[6])
local in_grace = gen == f.g - 1 and grace > 0 and now - f.r <= grace
if gen < f.g and not retry and not in_grace then
  local ended = end_family(rec, fid, f, now)
  return {'reuse', r[2], ended[1], ended[2], ended[3]}
end
if gen > f.g or f.c ~= ARGV[7] then return {'invalid'} end
local granted = {}
for s in string.gmatch(f.s, '%S+') do granted[s] = true end
for s in string.gmatch(ARGV[8], '%S+') do
  if not granted[s] then return {'scope'} end
end
local function answer(outcome, index)
  return {outcome, r[2], f.s, r[3], r[4], r[5] or '', r[6] or '', string.format('%d', f.e),
    string.format('%d', f.g), refresh_mac(f, sid, fid, f.g), fid .. '.' .. string.format('%d', index)}
end
if retry then return answer('ok', f.qn) end
-- the clamp: no access token outlives its session or its family (the caller mints the same exp)
local jti_exp = math.min(tonumber(ARGV[10]), tonumber(r[3]), f.e)
local index = f.n
f.n, f.x = f.n + 1, math.max(f.x, jti_exp)
checkpoint(f, tonumber(ARGV[10]) - now)
if gen == f.g then
  f.g, f.r, f.q, f.qn = f.g + 1, now, ARGV[9], index
  redis.call('HSET', rec, 'f:' .. fid, encode_family(f))
  return answer('ok', index)
end
redis.call('HSET', rec, 'f:' .. fid, encode_family(f))  -- a replay within the grace period
return answer('grace', index)
